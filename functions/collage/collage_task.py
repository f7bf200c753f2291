"""One creator's collage: download its covers, render the grid, store the pages and a result record.

The result record (in the run's temp area) is what the aggregator reads; it also makes the task
idempotent: a retried or redriven task whose creator already has a result does nothing again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from collage import aws
from collage.config import ProcessingConfig, config_from_dict
from collage.engine.fetch_policy import FetchPolicy
from collage.engine.url_guard import scrub_url
from collage.errors import TransientError, is_transient
from collage.naming import safe_segment

DONE_STATUSES = ("ok", "partial")


def collage_keys(output_prefix: str, name: str, timestamp: str, pages: int) -> list[str]:
    """`alice_20250119T103000Z.jpg`, then `alice_20250119T103000Z_p2.jpg`, ... for extra pages."""
    stem = f"{output_prefix}{name}_{timestamp}"
    return [f"{stem}.jpg" if page == 1 else f"{stem}_p{page}.jpg" for page in range(1, pages + 1)]


def result_key(run: Mapping[str, Any], name: str) -> str:
    return f"{run['temp_prefix']}results/{name}.json"


def summarise(record: Mapping[str, Any]) -> dict[str, Any]:
    """The small value a map child returns (the full record stays in S3)."""
    return {
        "creator": record["creator"],
        "status": record["status"],
        "collages": len(record["collages"]),
        "covers_failed": record["covers_failed"],
    }


def process_creator(
    item: Mapping[str, Any],
    run: Mapping[str, Any],
    config: ProcessingConfig | Mapping[str, Any],
    *,
    output_bucket: str,
    temp_bucket: str,
    allow_loopback: bool = False,
    allowed_host_suffixes: Sequence[str] = (),
    deadline: float | None = None,
) -> dict[str, Any]:
    """Render and store one creator's collage; return the full result record."""
    if not isinstance(config, ProcessingConfig):
        config = config_from_dict(config)
    creator = item["creator"]
    name = item.get("name") or safe_segment(creator)
    record_key = result_key(run, name)
    previous = aws.get_json(temp_bucket, record_key)
    if previous and previous.get("status") in DONE_STATUSES:
        return {**previous, "skipped": True}

    try:
        record = _render_and_store(
            item, run, config, name, output_bucket, allow_loopback, allowed_host_suffixes, deadline
        )
    except Exception as error:
        if is_transient(error):
            raise TransientError(f"{type(error).__name__}: {error}") from error
        # A bug or an unexpected input: recorded for the report, not retried.
        record = failed_record(creator, name, f"{type(error).__name__}: {error}")
    aws.put_json(temp_bucket, record_key, record)
    return record


def failed_record(creator: str, name: str, reason: str) -> dict[str, Any]:
    """The result record of a creator without a collage (also used by the aggregator)."""
    return {
        "creator": creator,
        "name": name,
        "status": "failed",
        "error": reason,
        "collages": [],
        "covers": 0,
        "covers_ok": 0,
        "covers_failed": 0,
        "covers_cut": 0,
        "failures": [],
        "bytes_downloaded": 0,
        "download_seconds": 0.0,
        "render_seconds": 0.0,
    }


def _render_and_store(
    item: Mapping[str, Any],
    run: Mapping[str, Any],
    config: ProcessingConfig,
    name: str,
    output_bucket: str,
    allow_loopback: bool,
    allowed_host_suffixes: Sequence[str],
    deadline: float | None,
) -> dict[str, Any]:
    creator = item["creator"]
    urls: list[str] = list(item["urls"])
    lines: list[int] = list(item.get("lines") or [0] * len(urls))
    # Imported here, not at the top: the aggregate step imports this module for
    # failed_record and carries no Pillow.
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout

    policy = FetchPolicy.from_config(
        config, allow_loopback=allow_loopback, allowed_host_suffixes=allowed_host_suffixes
    )
    result = build_collage(
        urls,
        Layout.from_config(config),
        policy=policy,
        max_workers=config.max_workers,
        deadline=deadline,
    )
    keys = collage_keys(run["output_prefix"], name, run["timestamp"], len(result.pages))
    for key, page in zip(keys, result.pages, strict=True):
        aws.put_bytes(
            output_bucket,
            key,
            page,
            "image/jpeg",
            Metadata={"run-id": run["id"], "creator": quote(name)},
        )
    failures = [
        {
            "line": lines[outcome.index] if outcome.index < len(lines) else None,
            "url": scrub_url(outcome.source),  # no credentials or signatures in reports
            "code": outcome.error_code,
            "error": outcome.error,
        }
        for outcome in result.failed
    ]
    if not result.pages:
        status = "failed"
    elif failures:
        status = "partial"
    else:
        status = "ok"
    return {
        "creator": creator,
        "name": name,
        "status": status,
        "error": "no cover could be rendered" if status == "failed" else None,
        "collages": keys,
        "covers": len(urls),
        "covers_ok": len(urls) - len(failures),
        "covers_failed": len(failures),
        "covers_cut": item.get("cut", 0),
        "failures": failures,
        "bytes_downloaded": result.bytes_downloaded,
        "download_seconds": round(result.download_seconds, 3),
        "render_seconds": round(result.render_seconds, 3),
    }
