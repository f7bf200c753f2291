"""The Split step of a run: stream the CSV from S3, write the map items and the row issues.

Writes into the run's temp area:
- `items.json`: the Distributed Map's item source (one item per creator);
- `expected.json`: `[creator, name]` pairs, so the aggregator can name creators without results;
- `row-issues.json`: every rejected row or warning, with its line number.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from collage import aws
from collage.config import config_from_dict
from collage.csv_input import CsvFileError
from collage.errors import retried_when_transient
from collage.runs import ARCHIVE_PREFIX, FAILED_PREFIX, parked_key
from collage.split import split_csv


@retried_when_transient
def split_run(
    run: Mapping[str, Any], config: Mapping[str, Any], *, temp_bucket: str
) -> dict[str, Any]:
    """Split the run's CSV; return the small summary the state machine carries to the map.

    Raises CsvFileError when the file is unusable (the run fails and the CSV goes to failed/),
    TransientError when S3 is failing (the state machine retries the step).
    """
    from botocore.exceptions import ClientError

    try:
        return _split(run, config, temp_bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise CsvFileError(
                f"CSV not found: s3://{run['source_bucket']}/{run['source_key']}"
            ) from None
        raise


def _open_csv(run: Mapping[str, Any]) -> Any:
    """The run's CSV, or the copy an earlier execution of this run parked (a restarted run)."""
    from botocore.exceptions import ClientError

    source = run["source_key"]
    parked = [parked_key(p, source, run["timestamp"]) for p in (ARCHIVE_PREFIX, FAILED_PREFIX)]
    for key in (source, *parked):
        try:
            return aws.open_object(run["source_bucket"], key)
        except ClientError as error:
            missing = error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
            if not missing or key == parked[-1]:
                raise
    raise AssertionError("unreachable")


def _split(run: Mapping[str, Any], config: Mapping[str, Any], temp_bucket: str) -> dict[str, Any]:
    settings = config_from_dict(config)
    prefix = run["temp_prefix"]
    items_key = f"{prefix}items.json"
    body = _open_csv(run)
    # The items can be hundreds of MB for a month's CSV: spool them to /tmp, then upload in parts.
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as spool:
        try:
            with body:
                summary = split_csv(body, spool, settings.max_images_per_creator)
            spool.close()
            aws.upload_file(spool.name, temp_bucket, items_key, "application/json")
        finally:
            os.unlink(spool.name)
    aws.put_json(temp_bucket, f"{prefix}expected.json", summary.expected)
    aws.put_json(temp_bucket, f"{prefix}row-issues.json", [i.to_dict() for i in summary.issues])
    return {"items_key": items_key, **summary.to_dict()}
