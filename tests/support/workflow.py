"""Helpers for tests that drive the local stack: read objects, build CSVs, run to the end."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image


def csv_text(rows: list[tuple[str, str, str]]) -> str:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["creator_name", "cover_url", "updated_at"])
    writer.writerows(rows)
    return out.getvalue()


def keys(stack: Any, logical: str, prefix: str = "") -> list[str]:

    return sorted(stack.store.list_keys(stack.names[logical], prefix))


def collage_keys(stack: Any, prefix: str = "") -> list[str]:
    """The output bucket's collages: its JPEGs but the contact sheet's thumbnails."""
    return [k for k in keys(stack, "OutputBucket", prefix) if is_collage(k)]


def is_collage(key: str) -> bool:
    return key.endswith(".jpg") and "/thumbs/" not in key


def read(stack: Any, logical: str, key: str) -> bytes:

    return stack.store.s3.get_object(Bucket=stack.names[logical], Key=key)["Body"].read()


def read_json(stack: Any, logical: str, key: str) -> Any:
    return json.loads(read(stack, logical, key))


def image(stack: Any, key: str) -> Image.Image:
    return Image.open(io.BytesIO(read(stack, "OutputBucket", key)))


def run_csv(
    stack: Any, text: str, key: str = "csv-files/covers.csv", timeout: float = 120
) -> tuple[dict, dict]:
    """Upload a CSV, wait for its execution; return (starter response, described execution)."""
    started = stack.upload_csv(text.encode(), key)
    return started, stack.wait(started["name"], timeout=timeout)


def executions(stack: Any) -> list[dict]:
    """The state machine's executions, newest first."""

    return stack.store.sfn.list_executions(stateMachineArn=stack.names["CollageStateMachine"])[
        "executions"
    ]
