"""The end of a run: collect every creator's result, write the run report, archive the CSV.

Every creator the split produced appears in the report: with its result record, or, when its
task never wrote one (it crashed past its retries, or the map stopped early), as failed with
the reason the state machine recorded. A run that failed as a whole moves its CSV to `failed/`
with an error report beside it; otherwise the CSV goes to `archive/`. What is parked is the
run's own copy of its upload (split_task), and the uploaded object is deleted only while it is
still that upload: a later upload to the same key stays for its own run. A superseded run
(its upload replaced before it was read) parks nothing and says so in its report.
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

from pydantic import BaseModel, Field, ValidationError

from collage.aws import Store, is_changed, is_missing
from collage.contracts import (
    AggregateEvent,
    CoverTotals,
    CreatorResult,
    CreatorTotals,
    RowTotals,
    Run,
    RunError,
    RunReport,
    RunStatus,
    RunSummary,
    RunTotals,
    SplitResult,
    StepError,
)
from collage.errors import retried_when_transient
from collage.layout import RunLayout
from collage.sheet import ContactSheet

READ_WORKERS = 32  # result records are small: many in flight keeps a 50k-creator run quick
WINDOW = 1024  # creators whose records are read before they are written out
SUMMARY_ROW_ISSUES = 10  # in the execution output (and so on stdout of collage run / submit)


def park_csv(
    store: Store, run: Run, temp_bucket: str, input_bucket: str, parked: str
) -> str | None:
    """Park the run's CSV at `parked` and remove the upload; return the parked key, or None
    when there was nothing of this run's to park (the report then names no CSV).

    The run's own copy is parked when the split made one; otherwise (the split failed before
    copying) the uploaded object, only while it is still this run's upload. The uploaded
    object is deleted only while it has the upload's ETag, so a later upload to the key stays.
    """
    from botocore.exceptions import ClientError

    copy = RunLayout(run).source_copy
    if store.head_object(temp_bucket, copy) is not None:
        store.copy_object(temp_bucket, copy, input_bucket, parked)
    else:
        try:
            store.copy_object(
                run.source_bucket, run.source_key, input_bucket, parked, if_match=run.source_etag
            )
        except ClientError as error:
            if not (is_missing(error) or is_changed(error)):
                raise
            # An upload that is gone or replaced is never named as this run's CSV; a message's
            # CSV (its key its own, no ETag) that is gone was parked by an earlier attempt.
            return None if run.source_etag else parked
    store.delete_object(run.source_bucket, run.source_key, if_match=run.source_etag)
    return parked


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
    reasons: dict[str, str] = {}
    for child in _failed_children(store, map_result):
        try:
            name = json.loads(child.get("Input") or "{}")["item"]["name"]
        except (TypeError, ValueError, KeyError):
            continue
        error = StepError(Error=child.get("Error") or "Error", Cause=child.get("Cause"))
        reasons[name] = describe_error(error) or "the map child failed"
    return reasons


class _ResultFile(BaseModel):
    Key: str


class _ResultManifest(BaseModel):
    """The Distributed Map's ResultWriter manifest (only what is read of it)."""

    DestinationBucket: str | None = None
    ResultFiles: dict[str, list[_ResultFile]] = Field(default_factory=dict)


def _failed_children(store: Store, map_result: Mapping[str, Any] | None) -> Iterator[Any]:
    details = (map_result or {}).get("ResultWriterDetails") or {}
    bucket, key = details.get("Bucket"), details.get("Key")
    if not (bucket and key):
        return
    manifest = _ResultManifest.model_validate(store.get_json(bucket, key) or {})
    for result_file in manifest.ResultFiles.get("FAILED", []):
        yield from store.get_json(manifest.DestinationBucket or bucket, result_file.Key) or []


def creator_records(
    store: Store,
    temp_bucket: str,
    run: Run,
    missing_reason: str,
    map_result: Mapping[str, Any] | None = None,
) -> Iterator[CreatorResult]:
    """One result per creator the split listed, in CSV order, read WINDOW at a time (memory
    stays at a window however many creators); a creator without a result record is failed
    with the reason its map child failed (when known) or `missing_reason`."""
    keys = RunLayout(run)
    lines = store.iter_lines(temp_bucket, keys.creators)
    reasons: dict[str, str] | None = None

    def load(entry: list[str]) -> Any:
        return store.get_json(temp_bucket, keys.result(entry[1]))

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        while window := [json.loads(line) for line in islice(lines, WINDOW)]:
            for (creator, name), record in zip(window, pool.map(load, window), strict=True):
                if record is None and reasons is None:
                    reasons = map_failures(store, map_result)
                reason = (reasons or {}).get(name, missing_reason)
                yield _result(record, creator, name, reason)


def _result(record: Any, creator: str, name: str, missing_reason: str) -> CreatorResult:
    """The creator's result from its record; failed when there is none or it is unreadable."""
    if record is None:
        return CreatorResult.failed(creator, name, missing_reason)
    try:
        return CreatorResult.model_validate(record)
    except ValidationError as error:
        reason = f"its result record is unreadable: {error.errors()[0]['msg']}"
        return CreatorResult.failed(creator, name, reason)


class Totals:
    """The report's totals, counted record by record."""

    def __init__(self, split: SplitResult | None) -> None:
        self.split = split
        self.statuses: Counter[str] = Counter()
        self.covers_ok = self.covers_failed = self.covers_cut = self.bytes = self.collages = 0

    def add(self, result: CreatorResult) -> None:
        self.statuses[result.status] += 1
        self.covers_ok += result.covers_ok
        self.covers_failed += result.covers_failed
        self.covers_cut += result.covers_cut
        self.bytes += result.bytes_downloaded
        self.collages += len(result.collages)

    def totals(self) -> RunTotals:
        split, statuses = self.split, self.statuses
        return RunTotals(
            creators=CreatorTotals(
                total=statuses.total(),
                succeeded=statuses["ok"],
                partial=statuses["partial"],
                failed=statuses["failed"],
            ),
            covers=CoverTotals(
                downloaded=self.covers_ok,
                failed=self.covers_failed,
                cut=self.covers_cut,
                bytes=self.bytes,
            ),
            collages=self.collages,
            rows=RowTotals(
                used=split.rows if split else 0,
                rejected=split.rows_rejected if split else 0,
                warnings=split.row_warnings if split else 0,
            ),
        )


@retried_when_transient
def finish_run(
    request: AggregateEvent,
    store: Store,
    *,
    input_bucket: str,
    output_bucket: str,
    temp_bucket: str,
) -> RunSummary:
    """Write the report, park the CSV, and return the concise run summary (the execution output).

    A stage that failed as a whole (the split, or the map) fails the run; without such an
    error the run succeeded, whatever some creators did.
    Raises TransientError when S3 is failing (the state machine retries the step).
    """
    run, split = request.run, request.split
    keys = RunLayout(run)
    totals = Totals(split)
    with (
        tempfile.TemporaryFile() as creators,  # the records, written as they are read
        ContactSheet(keys) as sheet,
    ):
        if split:
            reason = describe_error(request.failure()[0])
            missing = reason or "the collage task did not record a result"
            for result in creator_records(store, temp_bucket, run, missing, request.map_result):
                creators.write(b",\n" if totals.statuses else b"\n")
                creators.write(_record_json(result))
                totals.add(result)
                sheet.add(result)
        creators.seek(0)
        buckets = (input_bucket, output_bucket, temp_bucket)
        return Reporter(request, totals.totals(), store, buckets).write(creators, sheet)


def _record_json(result: CreatorResult) -> bytes:
    """The record as the report lists it (UTF-8, compact: pydantic's own JSON encoder)."""
    return result.model_dump_json().encode()


class Reporter:
    """Writes the run's report: its status, where its CSV went, its row issues, its totals."""

    def __init__(
        self,
        request: AggregateEvent,
        totals: RunTotals,
        store: Store,
        buckets: tuple[str, str, str],
    ) -> None:
        self.request, self.totals, self.store = request, totals, store
        self.input_bucket, self.output_bucket, self.temp_bucket = buckets
        self.run = request.run
        self.keys = RunLayout(self.run)
        error, stage = request.failure()
        self.error = RunError(stage=stage, reason=describe_error(error)) if stage else None

    def write(self, creators: IO[bytes], sheet: ContactSheet) -> RunSummary:
        """Park the CSV, upload the report (the records streamed from `creators`) and the
        contact sheet's pages; return the run's summary."""
        run, keys, out = self.run, self.keys, self.output_bucket
        row_issues = self.store.get_json(self.temp_bucket, keys.row_issues) or []
        all_issues = self._copy_all_row_issues()
        superseded = self._superseded()
        parked = None if superseded else self._park()
        status = self._status(superseded)
        report = RunReport(
            run_id=run.id,
            status=status,
            error=self.error,
            superseded=superseded,
            trigger=run.trigger,
            source=f"s3://{run.source_bucket}/{run.source_key}",
            csv=f"s3://{self.input_bucket}/{parked}" if parked else None,
            timestamp=run.timestamp,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            config=self.request.config.to_dict() if self.request.config else {},
            totals=self.totals,
            row_issues=row_issues,
            row_issues_unlisted=self._unlisted(),
            row_issues_all=f"s3://{out}/{all_issues}" if all_issues else None,
        )
        head = json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=1)
        parts = [io.BytesIO(f'{head[:-2]},\n "creators": ['.encode()), creators]
        parts.append(io.BytesIO(b"\n]}\n"))
        self.store.upload_stream(parts, out, keys.report, "application/json")
        for page_key, page in sheet.pages(report):  # after the report: its figures, its link
            self.store.upload_stream([page], out, page_key, "text/html; charset=utf-8")
        if self.error and parked:
            self.store.put_json(self.input_bucket, keys.error_note(parked), self.error.model_dump())
        return RunSummary(
            run_id=run.id,
            status=status,
            error=self.error,
            superseded=superseded,
            **self.totals.model_dump(),
            row_issues_first=row_issues[:SUMMARY_ROW_ISSUES],
            collages_at=f"s3://{out}/{run.output_prefix}",
            report=f"s3://{out}/{keys.report}",
            sheet=f"s3://{out}/{keys.sheet_page(1)}",
            csv=report.csv,
        )

    def _unlisted(self) -> int:
        split = self.request.split
        return split.row_issues_unlisted if split else 0

    def _copy_all_row_issues(self) -> str | None:
        """Too many row issues to list in the report: the full list goes next to it."""
        if not self._unlisted():
            return None
        target = self.keys.report_row_issues
        self.store.copy_object(
            self.temp_bucket, self.keys.all_row_issues, self.output_bucket, target
        )
        return target

    def _superseded(self) -> str | None:
        if self.error:
            return None
        marker = self.store.get_json(self.temp_bucket, self.keys.superseded)
        return marker["reason"] if marker else None

    def _park(self) -> str | None:
        target = self.keys.parked(failed=self.error is not None)
        return park_csv(self.store, self.run, self.temp_bucket, self.input_bucket, target)

    def _status(self, superseded: str | None) -> RunStatus:
        if self.error:
            return "failed"
        if superseded:
            return "superseded"
        return "completed_with_failures" if self.totals.problems else "succeeded"
