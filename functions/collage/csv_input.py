"""Read the workflow's CSV (`creator_name,cover_url,updated_at`) as a stream of checked rows.

The file is decoded as UTF-8 (a BOM is fine), rows may use CRLF and quoted fields with commas
or newlines, columns may come in any order and extra columns are ignored; `updated_at` is
optional. A bad row becomes a `RowIssue` naming its line and the rest goes on; a bad file
(empty, no header, a required column missing, no data rows) raises `CsvFileError`.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO
from urllib.parse import urlsplit

from collage.config import MAX_URL_LENGTH

REQUIRED_COLUMNS = ("creator_name", "cover_url")
OPTIONAL_COLUMNS = ("updated_at",)
MAX_CREATOR_NAME_LENGTH = 512
# Larger than any field we accept, so an over-long field is reported as such (not as a csv
# module error) while a runaway unclosed quote still cannot eat the whole file into memory.
FIELD_SIZE_LIMIT = 64 * 1024
csv.field_size_limit(FIELD_SIZE_LIMIT)


class CsvFileError(ValueError):
    """The file as a whole cannot be processed (the run fails with this reason)."""


@dataclass(frozen=True, slots=True)
class CoverRow:
    line: int  # 1-based line where the record starts
    creator: str
    url: str
    updated_at: str  # as written, '' when missing
    timestamp: float | None  # parsed `updated_at` (UTC seconds), None when missing


@dataclass(frozen=True, slots=True)
class RowIssue:
    line: int
    message: str
    severity: str = "error"  # "error": the row was skipped; "warning": used with a caveat
    creator: str = ""

    def to_dict(self) -> dict:
        return {
            "line": self.line,
            "severity": self.severity,
            "creator": self.creator,
            "message": self.message,
        }


def parse_timestamp(text: str) -> float | None:
    """ISO 8601 date or date-time (naive means UTC) to epoch seconds; None if unparseable."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def normalise_creator(name: str) -> str:
    """The creator key: trimmed and NFC-normalised, so visually equal names group together."""
    return unicodedata.normalize("NFC", name.strip())


def check_url(url: str) -> str | None:
    """Why `url` cannot be a cover URL, or None if it looks fine (reachability is checked later)."""
    if not url:
        return "missing cover_url"
    if len(url) > MAX_URL_LENGTH:
        return f"cover_url longer than {MAX_URL_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "cover_url contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        return f"invalid cover_url: {error}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"cover_url scheme must be http or https, got {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "cover_url has no host"
    return None


def _text_stream(raw: IO[bytes]) -> IO[str]:
    # 'replace' keeps going past invalid bytes; rows that contain U+FFFD are then reported.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def _header_index(header: list[str]) -> dict[str, int]:
    names = [unicodedata.normalize("NFC", h).strip().lower() for h in header]
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        found = ", ".join(repr(h) for h in header[:10]) or "nothing"
        raise CsvFileError(
            f"CSV header must name the columns {', '.join(REQUIRED_COLUMNS)} "
            f"(and optionally updated_at); missing {', '.join(missing)}; found {found}"
        )
    return index


def read_rows(
    raw: IO[bytes],
    on_issue: Callable[[RowIssue], None],
) -> Iterator[CoverRow]:
    """Yield every usable row of the CSV in `raw`; call `on_issue` for every problem row.

    Raises CsvFileError for problems with the file as a whole. Exact duplicate rows (same
    creator and URL) are kept once, with a warning naming the first occurrence.
    """
    reader = csv.reader(_text_stream(raw))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFileError("CSV file is empty") from None
    except csv.Error as error:
        raise CsvFileError(f"CSV header cannot be read: {error}") from None
    columns = _header_index(header)
    creator_at, url_at = columns["creator_name"], columns["cover_url"]
    updated_at = columns.get("updated_at")
    needed = max(creator_at, url_at) + 1

    seen: dict[tuple[str, str], int] = {}
    data_rows = 0
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            previous_end = reader.line_num
            on_issue(RowIssue(start, f"malformed CSV record: {error}"))
            continue
        previous_end = reader.line_num
        if not record or all(not field.strip() for field in record):
            continue  # blank line
        data_rows += 1
        row = _check_record(record, start, creator_at, url_at, updated_at, needed, on_issue)
        if row is None:
            continue
        key = (row.creator, row.url)
        first = seen.setdefault(key, start)
        if first != start:
            on_issue(RowIssue(start, f"duplicate of line {first}; skipped", "warning", row.creator))
            continue
        yield row
    if data_rows == 0:
        raise CsvFileError("CSV file has a header but no data rows")


def _check_record(
    record: list[str],
    line: int,
    creator_at: int,
    url_at: int,
    updated_at: int | None,
    needed: int,
    on_issue: Callable[[RowIssue], None],
) -> CoverRow | None:
    if len(record) < needed:
        on_issue(RowIssue(line, f"expected at least {needed} fields, found {len(record)}"))
        return None
    creator = normalise_creator(record[creator_at])
    url = record[url_at].strip()
    stamp_text = (
        record[updated_at].strip() if updated_at is not None and updated_at < len(record) else ""
    )
    shown = creator[:80]
    if any("\ufffd" in field for field in (creator, url, stamp_text)):
        on_issue(RowIssue(line, "row is not valid UTF-8", creator=shown))
        return None
    if not creator:
        on_issue(RowIssue(line, "missing creator_name"))
        return None
    if len(creator) > MAX_CREATOR_NAME_LENGTH:
        on_issue(
            RowIssue(
                line,
                f"creator_name longer than {MAX_CREATOR_NAME_LENGTH} characters",
                creator=shown,
            )
        )
        return None
    problem = check_url(url)
    if problem:
        on_issue(RowIssue(line, problem, creator=shown))
        return None
    timestamp = parse_timestamp(stamp_text)
    if stamp_text and timestamp is None:
        on_issue(
            RowIssue(
                line,
                f"updated_at {stamp_text[:40]!r} is not an ISO date; sorted last",
                "warning",
                shown,
            )
        )
        stamp_text = ""
    return CoverRow(line, creator, url, stamp_text, timestamp)


def tile_order_key(row: CoverRow) -> tuple[int, float, int]:
    """The tile order: newest `updated_at` first, rows without one last, ties in CSV order."""
    if row.timestamp is None:
        return (1, 0.0, row.line)
    return (0, -row.timestamp, row.line)
