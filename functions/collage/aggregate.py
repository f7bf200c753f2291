"""The end of a run: collect every creator's result, write the run report, archive the CSV.

Every creator the split produced appears in the report: with its result record, or, when its
task never wrote one (it crashed past its retries, or the map stopped early), as failed with
the reason the state machine recorded. A run that failed as a whole moves its CSV to `failed/`
with an error report beside it; otherwise the CSV goes to `archive/`.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import islice
from typing import IO, Any

from collage.aws import Store
from collage.collage_task import failed_record
from collage.contracts import AggregateEvent, Run, SplitResult, StepError
from collage.errors import retried_when_transient
from collage.runs import ARCHIVE_PREFIX, FAILED_PREFIX, parked_key
from collage.sheet import ContactSheet

READ_WORKERS = 32  # result records are small: many in flight keeps a 50k-creator run quick
WINDOW = 1024  # creators whose records are read before they are written out
SUMMARY_ROW_ISSUES = 10  # in the execution output (and so on stdout of collage run / submit)


def report_key(run: Run) -> str:
    return f"{run.output_prefix}report_{run.timestamp}.json"


def sheet_key(run: Run) -> str:
    """The contact sheet's first page, beside the report: `report_TIMESTAMP.html`."""
    return report_key(run).removesuffix(".json") + ".html"


def describe_error(error: StepError | None) -> str | None:
    """A state machine error ({"Error", "Cause"}) as one readable line."""
    if not error:
        return None
    cause = error.Cause or ""
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            cause = parsed["errorMessage"]
    except (TypeError, ValueError):
        pass
    return f"{error.Error}: {cause}".strip().rstrip(":")


def map_failures(store: Store, map_result: Mapping[str, Any] | None) -> dict[str, str]:
    """Why map children failed, by creator key, from the Distributed Map's ResultWriter files.

    On AWS the manifest lists FAILED_n.json files, each an array of failed children with their
    `Input` (a JSON string), `Error` and `Cause`. The local emulator writes no such files.
    """
    details = (map_result or {}).get("ResultWriterDetails") or {}
    if not details.get("Bucket") or not details.get("Key"):
        return {}
    manifest = store.get_json(details["Bucket"], details["Key"]) or {}
    bucket = manifest.get("DestinationBucket") or details["Bucket"]
    reasons: dict[str, str] = {}
    for result_file in (manifest.get("ResultFiles") or {}).get("FAILED") or []:
        for child in store.get_json(bucket, result_file["Key"]) or []:
            try:
                name = json.loads(child.get("Input") or "{}")["item"]["name"]
            except (TypeError, ValueError, KeyError):
                continue
            reasons[name] = (
                describe_error(
                    StepError(Error=child.get("Error") or "Error", Cause=child.get("Cause"))
                )
                or "the map child failed"
            )
    return reasons


def creator_records(
    store: Store,
    temp_bucket: str,
    run: Run,
    missing_reason: str,
    map_result: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per creator the split listed, in CSV order, read WINDOW at a time (memory
    stays at a window however many creators); a creator without a result record is failed
    with the reason its map child failed (when known) or `missing_reason`."""
    lines = store.iter_lines(temp_bucket, f"{run.temp_prefix}creators.jsonl")
    reasons: dict[str, str] | None = None

    def load(entry: list[str]) -> dict[str, Any] | None:
        return store.get_json(temp_bucket, f"{run.temp_prefix}results/{entry[1]}.json")

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        while window := [json.loads(line) for line in islice(lines, WINDOW)]:
            for (creator, name), record in zip(window, pool.map(load, window), strict=True):
                if record is None and reasons is None:
                    reasons = map_failures(store, map_result)
                yield record or failed_record(
                    creator, name, (reasons or {}).get(name, missing_reason)
                )


class Totals:
    """The report's totals, counted record by record."""

    def __init__(self, split: SplitResult | None) -> None:
        self.split = split
        self.statuses: Counter[str] = Counter()
        self.covers: Counter[str] = Counter()
        self.collages = 0

    def add(self, record: Mapping[str, Any]) -> None:
        self.statuses[record["status"]] += 1
        for field in ("covers_ok", "covers_failed", "covers_cut", "bytes_downloaded"):
            self.covers[field] += record.get(field, 0)
        self.collages += len(record.get("collages", []))

    def to_dict(self) -> dict[str, Any]:
        split, statuses, covers = self.split, self.statuses, self.covers
        return {
            "creators": {
                "total": statuses.total(),
                "succeeded": statuses["ok"],
                "partial": statuses["partial"],
                "failed": statuses["failed"],
            },
            "covers": {
                "downloaded": covers["covers_ok"],
                "failed": covers["covers_failed"],
                "cut": covers["covers_cut"],
                "bytes": covers["bytes_downloaded"],
            },
            "collages": self.collages,
            "rows": {
                "used": split.rows if split else 0,
                "rejected": split.rows_rejected if split else 0,
                "warnings": split.row_warnings if split else 0,
            },
        }


@retried_when_transient
def finish_run(
    request: AggregateEvent,
    store: Store,
    *,
    input_bucket: str,
    output_bucket: str,
    temp_bucket: str,
) -> dict[str, Any]:
    """Write the report, park the CSV, and return the concise run summary (the execution output).

    A stage that failed as a whole (the split, or the map) fails the run; without such an
    error the run succeeded, whatever some creators did.
    Raises TransientError when S3 is failing (the state machine retries the step).
    """
    run, split = request.run, request.split
    totals = Totals(split)
    with (
        tempfile.TemporaryFile() as creators,  # the records, written as they are read
        ContactSheet(sheet_key(run), report_key(run)) as sheet,
    ):
        if split:
            reason = describe_error(request.failure()[0])
            missing = reason or "the collage task did not record a result"
            for record in creator_records(store, temp_bucket, run, missing, request.map_result):
                creators.write(b",\n" if totals.statuses else b"\n")
                creators.write(json.dumps(record, ensure_ascii=False, default=str).encode())
                totals.add(record)
                sheet.add(record)
        creators.seek(0)
        buckets = (input_bucket, output_bucket, temp_bucket)
        return _report(request, totals, creators, sheet, store, *buckets)


def _report(
    request: AggregateEvent,
    totals: Totals,
    creators: IO[bytes],
    sheet: ContactSheet,
    store: Store,
    input_bucket: str,
    output_bucket: str,
    temp_bucket: str,
) -> dict[str, Any]:
    run, split = request.run, request.split
    error, failed_stage = request.failure()
    reason = describe_error(error)
    row_issues = store.get_json(temp_bucket, f"{run.temp_prefix}row-issues.json") or []
    unlisted = split.row_issues_unlisted if split else 0
    all_issues = None
    if unlisted:  # too many to list in the report: the full list goes next to it
        all_issues = report_key(run).removesuffix(".json") + "_row_issues.jsonl"
        source = f"{run.temp_prefix}row-issues.jsonl"
        store.copy_object(temp_bucket, source, output_bucket, all_issues)
    status = "failed" if error else "succeeded"
    run_totals = totals.to_dict()
    problems = (
        run_totals["creators"]["failed"]
        + run_totals["covers"]["failed"]
        + run_totals["rows"]["rejected"]  # every rejected row is a cover that is not there
    )
    if status == "succeeded" and problems:
        status = "completed_with_failures"

    park_prefix = FAILED_PREFIX if error else ARCHIVE_PREFIX
    parked = parked_key(park_prefix, run.source_key, run.timestamp)
    store.move_object(run.source_bucket, run.source_key, input_bucket, parked)

    report = {
        "run_id": run.id,
        "status": status,
        "error": {"stage": failed_stage, "reason": reason} if error else None,
        "trigger": run.trigger,
        "source": f"s3://{run.source_bucket}/{run.source_key}",
        "csv": f"s3://{input_bucket}/{parked}",
        "timestamp": run.timestamp,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": request.config.to_dict() if request.config else {},
        "totals": run_totals,
        "row_issues": row_issues,  # by line; the first ones when there are very many
        "row_issues_unlisted": unlisted,
        "row_issues_all": f"s3://{output_bucket}/{all_issues}" if all_issues else None,
    }
    key = report_key(run)
    head = json.dumps(report, ensure_ascii=False, indent=1, default=str)[: -len("\n}")]
    parts = [io.BytesIO(f'{head},\n "creators": ['.encode()), creators, io.BytesIO(b"\n]}\n")]
    store.upload_stream(parts, output_bucket, key, "application/json")
    for page_key, page in sheet.pages(report):  # after the report: its figures, its link
        store.upload_stream([page], output_bucket, page_key, "text/html; charset=utf-8")
    if error:
        store.put_json(input_bucket, parked[: -len(".csv")] + ".error.json", report["error"])

    return {
        "run_id": run.id,
        "status": status,
        "error": report["error"],
        **run_totals,
        # The first row issues, each with its line, column and quoted value (at most 200
        # characters each, so the summary stays far below Step Functions' 256 KiB).
        "row_issues_first": row_issues[:SUMMARY_ROW_ISSUES],
        "collages_at": f"s3://{output_bucket}/{run.output_prefix}",
        "report": f"s3://{output_bucket}/{key}",
        "sheet": f"s3://{output_bucket}/{sheet.key}",
        "csv": report["csv"],
    }
