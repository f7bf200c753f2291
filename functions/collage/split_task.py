"""The Split step of a run: stream the CSV from S3, write the map items and the row issues.

Writes into the run's temp area:
- `source.csv`: the run's own copy of its upload (copied only while the key still holds the
  upload's ETag), which the split reads and the aggregate parks, so a later upload to the same
  key can neither change what this run reads nor be archived in its name. When the key holds a
  later upload already, the run is superseded: `superseded.json` says so and nothing is split;
- `items.json`: the Distributed Map's item source (one item per creator);
- `creators.jsonl`: a `[creator, name]` line per item, so the aggregator can stream the creators
  and name those without results;
- `row-issues.json`: the rejected rows and warnings with the lowest line numbers (10,000 at
  most), and, when there are more, `row-issues.jsonl`: every one, a JSON object a line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import IO, Any

from collage.aws import Store, error_code, is_changed, is_denied, is_missing
from collage.config import ProcessingConfig
from collage.contracts import Run, SplitResult
from collage.csv_input import CsvFileError, RowIssue
from collage.errors import retried_when_transient
from collage.layout import RunLayout
from collage.split import PAYLOAD_LIMIT, SplitLimits, SplitSummary, split_csv

# Bytes kept free beyond the measured run and settings: Step Functions' own serialization of the
# child's input is not documented byte for byte.
ENVELOPE_MARGIN = 1024


@retried_when_transient
def split_run(
    run: Run,
    config: ProcessingConfig,
    store: Store,
    *,
    temp_bucket: str,
    limits: SplitLimits | None = None,  # tests make them tiny
) -> SplitResult:
    """Split the run's CSV; return the small summary the state machine carries to the map.

    Raises CsvFileError when the file is unusable (the run fails and the CSV goes to failed/),
    TransientError when S3 is failing (the state machine retries the step).
    """
    from botocore.exceptions import ClientError

    limits = limits or replace(SplitLimits(), item_bytes=item_room(run, config))
    try:
        return _split(run, config, store, temp_bucket, limits)
    except ClientError as error:
        if is_missing(error):
            raise CsvFileError(
                f"CSV not found: s3://{run.source_bucket}/{run.source_key}"
            ) from None
        raise


def item_room(run: Run, config: ProcessingConfig) -> int:
    """The bytes a map item may take: a map child's input is `{"run", "config", "item"}` (the
    ASL's ItemSelector), at most Step Functions' PAYLOAD_LIMIT. The run and config are measured
    in their longest form (every non-ASCII character escaped, a space after each `:` and `,`)."""
    envelope = {"run": run.model_dump(mode="json"), "config": config.to_dict(), "item": None}
    return PAYLOAD_LIMIT - len(json.dumps(envelope, default=str)) - ENVELOPE_MARGIN


def _open_csv(run: Run, store: Store, temp_bucket: str) -> Any:
    """The run's own copy of its CSV (made on the first attempt), or the copy an earlier
    execution of this run parked; None when the key holds a later upload (superseded).

    S3 answers a missing key with 403 instead of 404 when the caller may not list the bucket
    (or, perhaps, when its ListBucket grant has an s3:prefix condition: see docs/deploy.md's
    deploy checklist), so a 403 on the upload also moves on to the parked keys. That is safe:
    each of them holds this run's own CSV.
    """
    from botocore.exceptions import ClientError

    copy = RunLayout(run).source_copy
    if store.head_object(temp_bucket, copy) is None:
        try:
            store.copy_object(
                run.source_bucket, run.source_key, temp_bucket, copy, if_match=run.source_etag
            )
        except ClientError as error:
            if is_changed(error):
                return None
            if not (is_missing(error) or is_denied(error)):
                raise
            return _open_parked(run, store, f"{run.source_key} ({error_code(error)})")
    return store.open_object(temp_bucket, copy)


def _open_parked(run: Run, store: Store, refused_upload: str) -> Any:
    """The CSV a restarted run parked already (archive/ or failed/); when none can be read, the
    error names every key tried."""
    from botocore.exceptions import ClientError

    source = run.source_key
    parked = [RunLayout(run).parked(failed) for failed in (False, True)]
    refused = [refused_upload]
    for key in parked:
        try:
            return store.open_object(run.source_bucket, key)
        except ClientError as error:
            if not (is_missing(error) or is_denied(error)):
                raise
            refused.append(f"{key} ({error_code(error)})")
    where = f"s3://{run.source_bucket}/"
    raise CsvFileError(f"CSV not found: {where}{source}; tried {where}" + ", ".join(refused))


def _superseded(run: Run, store: Store, temp_bucket: str) -> SplitResult:
    """Nothing to split: the key holds a later upload, whose own run processes it. The map gets
    no items and the report says why (an empty run, never a failed one)."""
    reason = (
        f"s3://{run.source_bucket}/{run.source_key} was replaced by a later upload before this "
        "run could read it; that upload's run processes the key's content"
    )
    keys = RunLayout(run)
    store.put_json(temp_bucket, keys.superseded, {"reason": reason})
    store.put_bytes(temp_bucket, keys.items, b"[]", "application/json")
    store.put_bytes(temp_bucket, keys.creators, b"", "application/x-ndjson")
    store.put_json(temp_bucket, keys.row_issues, [])
    return SplitResult(items_key=keys.items, **SplitSummary().to_dict())


@contextmanager
def _spool(suffix: str) -> Iterator[IO[bytes]]:
    """A file in /tmp for output too large to hold in memory, removed afterwards."""
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115
    try:
        yield handle
    finally:
        handle.close()
        os.unlink(handle.name)


def _split(
    run: Run, settings: ProcessingConfig, store: Store, temp_bucket: str, limits: SplitLimits
) -> SplitResult:
    keys = RunLayout(run)
    body = _open_csv(run, store, temp_bucket)
    if body is None:
        return _superseded(run, store, temp_bucket)
    # The items can be hundreds of MB for a month's CSV, and the issues as many as the rows:
    # both are spooled to /tmp, then uploaded (in parts).
    with _spool(".json") as items, _spool(".jsonl") as creators, _spool(".jsonl") as issues:

        def keep(issue: RowIssue) -> None:
            issues.write(json.dumps(issue.to_dict(), ensure_ascii=False).encode() + b"\n")

        with body:
            summary = split_csv(
                body, items, settings.max_images_per_creator, keep, creators_out=creators,
                limits=limits,
            )  # fmt: skip
        for spooled in (items, creators, issues):
            spooled.close()
        store.upload_file(items.name, temp_bucket, keys.items, "application/json")
        store.upload_file(creators.name, temp_bucket, keys.creators, "application/x-ndjson")
        if summary.issues_unlisted:
            store.upload_file(issues.name, temp_bucket, keys.all_row_issues, "application/x-ndjson")
    store.put_json(temp_bucket, keys.row_issues, [i.to_dict() for i in summary.issues])
    return SplitResult(items_key=keys.items, **summary.to_dict())
