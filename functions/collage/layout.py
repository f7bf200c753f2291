"""Where a run keeps what it reads and writes: every key of a run is named here, and only here.

    input bucket   csv-files/<path>.csv                 the upload (or sqs-inbox/<run>.csv)
                   archive/<path>_<TIMESTAMP>.csv       the CSV, parked after the run
                   failed/<path>_<TIMESTAMP>.csv        ... after a failed run, with .error.json
    temp bucket    runs/<run>/source.csv                the run's own copy of its upload
                   runs/<run>/items.json                the Distributed Map's items
                   runs/<run>/creators.jsonl            [creator, name] per item, in CSV order
                   runs/<run>/row-issues.json(l)        rejected and warned rows
                   runs/<run>/results/<name>.json       a creator's result record
                   runs/<run>/superseded.json           the upload was replaced before it was read
    output bucket  <prefix>collages/<name>_<TIMESTAMP>.jpg (_p2.jpg, ...) and thumbs/<same>.jpg
                   <prefix>collages/report_<TIMESTAMP>.json, _row_issues.jsonl, .html (_p2.html...)

TIMESTAMP is the run's: the event's time and the execution name's digest
(`20250119T103000Z-f0c56ed377`). The state machine's last-resort report (WriteFallbackReport)
builds `report_key` with States.Format, and `collage watch` finds a run's timestamp from its
report key: tests/unit/test_layout.py checks both against this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

CSV_PREFIX = "csv-files/"
INBOX_PREFIX = "sqs-inbox/"  # CSV data that arrived inside a message, kept for the run
ARCHIVE_PREFIX = "archive/"
FAILED_PREFIX = "failed/"
RUNS_PREFIX = "runs/"  # the temp bucket's per-run working area
THUMBNAILS = "thumbs/"  # beside the collages; no creator's key segment holds a "/"
REPORT_KEY = re.compile(r"report_(?P<timestamp>\d{8}T\d{6}Z-[0-9a-f]{10})\.json$")


class RunKeys(Protocol):
    """What a run's keys are made of (a contracts.Run)."""

    @property
    def id(self) -> str: ...
    @property
    def source_key(self) -> str: ...
    @property
    def timestamp(self) -> str: ...
    @property
    def output_prefix(self) -> str: ...
    @property
    def temp_prefix(self) -> str: ...


def temp_prefix(run_id: str) -> str:
    """The run's working area in the temp bucket: `runs/<run id>/`."""
    return f"{RUNS_PREFIX}{run_id}/"


def output_prefix(trigger: str, path: str) -> str:
    """A run's output folder: `s3-trigger/<CSV path>/collages/` for an upload,
    `sqs-trigger/<the message's output_prefix>/collages/` for a message."""
    return f"{trigger}-trigger/{path}/collages/"


def inbox_key(run_id: str) -> str:
    """Where a message's CSV is stored before its run starts."""
    return f"{INBOX_PREFIX}{run_id}.csv"


def report_timestamp(key: str) -> str | None:
    """The run's TIMESTAMP from its report's key, or None for another key."""
    match = REPORT_KEY.search(key)
    return match["timestamp"] if match else None


@dataclass(frozen=True)
class RunLayout:
    """Every key of one run."""

    run: RunKeys

    # ---------------------------------------------------------------- temp bucket
    def _temp(self, name: str) -> str:
        return f"{self.run.temp_prefix}{name}"

    @property
    def source_copy(self) -> str:
        return self._temp("source.csv")

    @property
    def superseded(self) -> str:
        return self._temp("superseded.json")

    @property
    def items(self) -> str:
        return self._temp("items.json")

    @property
    def creators(self) -> str:
        return self._temp("creators.jsonl")

    @property
    def row_issues(self) -> str:
        """The rejected and warned rows with the lowest line numbers (the report lists them)."""
        return self._temp("row-issues.json")

    @property
    def all_row_issues(self) -> str:
        """Every row issue, a JSON object a line (only when there are too many to list)."""
        return self._temp("row-issues.jsonl")

    @property
    def results(self) -> str:
        """The folder of the creators' result records."""
        return self._temp("results/")

    def result(self, name: str) -> str:
        return f"{self.results}{name}.json"

    # ---------------------------------------------------------------- output bucket
    def collages(self, name: str, pages: int) -> list[str]:
        """`alice_<TIMESTAMP>.jpg`, then `alice_<TIMESTAMP>_p2.jpg`, ... for further pages."""
        stem = f"{self.run.output_prefix}{name}_{self.run.timestamp}"
        return [
            f"{stem}.jpg" if page == 1 else f"{stem}_p{page}.jpg" for page in range(1, pages + 1)
        ]

    def thumbnail(self, name: str) -> str:
        """`thumbs/alice_<TIMESTAMP>.jpg` beside the collages: page 1, small."""
        return f"{self.run.output_prefix}{THUMBNAILS}{name}_{self.run.timestamp}.jpg"

    @property
    def report(self) -> str:
        return f"{self.run.output_prefix}report_{self.run.timestamp}.json"

    @property
    def report_row_issues(self) -> str:
        """Every row issue, beside the report, when the report cannot list them all."""
        return self.report.removesuffix(".json") + "_row_issues.jsonl"

    def sheet_page(self, number: int) -> str:
        """The contact sheet's pages: `report_<TIMESTAMP>.html`, then `..._p2.html`, ..."""
        stem = self.report.removesuffix(".json")
        return f"{stem}.html" if number == 1 else f"{stem}_p{number}.html"

    # ---------------------------------------------------------------- input bucket
    def parked(self, failed: bool) -> str:
        """Where the run's CSV is kept: `archive/daily/covers_<TIMESTAMP>.csv` (or `failed/`)."""
        relative = self.run.source_key.removeprefix(CSV_PREFIX)
        stem = relative[:-4] if relative.lower().endswith(".csv") else relative
        return f"{FAILED_PREFIX if failed else ARCHIVE_PREFIX}{stem}_{self.run.timestamp}.csv"

    @property
    def last_resort_parked(self) -> str:
        """Where the state machine itself parks the CSV when the aggregate step cannot
        (ParkCsvDirectly): keyed by the run id, as no intrinsic function strips a path."""
        return f"{FAILED_PREFIX}{self.run.id}_{self.run.timestamp}.csv"

    @staticmethod
    def error_note(parked: str) -> str:
        """The failed run's error beside its parked CSV."""
        return parked.removesuffix(".csv") + ".error.json"
