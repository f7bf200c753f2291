"""The workflow's CSV (`creator_name,cover_url,updated_at`): what makes a row usable, and why not.

`collage.split` reads the file with Apache Arrow and comes here for every row its kernels do
not settle; tests/support/reference_csv.py reads it line by line with these same rules.

How the file is read (the README's failure-mode table says the same):
- In UTF-8 (a BOM is fine), UTF-16 or Windows-1252, as collage.text_encoding finds; a guess
  is reported on line 1. In a UTF-8 file, invalid UTF-8 makes its row an issue.
- Every physical line (ended by LF, CRLF or a lone CR) is one record, parsed as the csv module
  parses it. A quote that opens a field and does not close on its line makes that line a
  malformed record: a field never runs on into the next line, so one stray quote cannot swallow
  the rows after it, and a line number is always the line an editor shows.
- A creator name written as `'=...` (`'` before `=`, `+`, `-` or `@`: a spreadsheet's mark for
  text, as `collage export-urls` writes such names) is read without the apostrophe.
- Columns may come in any order and extra columns are ignored; `updated_at` is optional.
  A bad file (empty, no header, a required column missing, no data rows) raises CsvFileError.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from collage.engine.url_guard import scrub_text, url_problem
from collage.text_encoding import GUESSED_ENCODINGS

REQUIRED_COLUMNS = ("creator_name", "cover_url")
MAX_CREATOR_NAME_LENGTH = 512
MAX_LINE_BYTES = 1 << 20  # a longer line is reported and skipped unread
FORMULA_STARTS = ("=", "+", "-", "@")  # a spreadsheet runs a cell that starts so
MAX_QUOTED = 200  # characters of an offending value that an issue quotes
csv.field_size_limit(MAX_LINE_BYTES)  # fields are bounded by their line, and checked by length


class CsvFileError(ValueError):
    """The file as a whole cannot be processed (the run fails with this reason)."""


@dataclass(frozen=True, slots=True)
class CoverRow:
    line: int  # 1-based line of the record
    creator: str  # trimmed and NFC-normalised, so visually equal names group together
    url: str
    updated_at: str  # as written (trimmed), '' when missing or not a date


@dataclass(frozen=True, slots=True)
class RowIssue:
    line: int
    message: str
    severity: str = "error"  # "error": the row was skipped; "warning": used with a caveat
    creator: str = ""
    column: str = ""  # where the value came from; "" when it is the whole line
    value: str = ""  # the offending value, as `quoted` shows it

    def to_dict(self) -> dict:
        return asdict(self)


def encoding_issue(encoding: str) -> RowIssue | None:
    """The line-1 warning for a file read in a guessed encoding."""
    if encoding not in GUESSED_ENCODINGS:
        return None
    name = GUESSED_ENCODINGS[encoding]
    return RowIssue(1, f"file has no BOM and is not UTF-8: read as {name}", severity="warning")


def quoted(value: str) -> str:
    """A value as an issue quotes it: a URL's user:password@ removed (wherever it stands, as
    from the cover failures' URLs), cut to MAX_QUOTED characters; the report's JSON escapes
    the rest."""
    value = scrub_text(value)
    return value if len(value) <= MAX_QUOTED else value[:MAX_QUOTED] + "…"


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where the columns are, from the header."""

    creator_at: int
    url_at: int
    updated_at: int | None
    width: int  # fields in the header

    @property
    def used(self) -> tuple[int, ...]:
        """The columns the rules read: creator_name, cover_url and updated_at if there is one."""
        stamp = () if self.updated_at is None else (self.updated_at,)
        return (self.creator_at, self.url_at, *stamp)

    @property
    def needed(self) -> int:
        """Fields a record needs (updated_at may be missing from short records)."""
        return max(self.creator_at, self.url_at) + 1


def parse_moment(text: str) -> datetime | None:
    """ISO 8601 date or date-time (naive means UTC) as an aware datetime; None if unparseable."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def layout_of(header: list[str]) -> CsvLayout:
    """Where the columns are, from the header's fields."""
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        index.setdefault(unicodedata.normalize("NFC", name).strip().lower(), position)
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        found = ", ".join(repr(h) for h in header[:10]) or "nothing"
        raise CsvFileError(
            f"CSV header must name the columns {', '.join(REQUIRED_COLUMNS)} "
            f"(and optionally updated_at); missing {', '.join(missing)}; found {found}"
        )
    at = index.get
    return CsvLayout(index["creator_name"], index["cover_url"], at("updated_at"), len(header))


def parse_line(text: str) -> list[str]:
    """The fields of one physical line, as the csv module reads them; a quote left open at the
    end of the line raises csv.Error."""
    line = text.rstrip("\r\n")
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise csv.Error("a quoted field is not closed on its line") from None
        return next(csv.reader([line]), [])  # other oddities (a quote mid-field) as csv reads them


def header_of(text: str) -> list[str]:
    try:
        return parse_line(text)
    except csv.Error as error:
        raise CsvFileError(f"CSV header cannot be read: {error}") from None


def spreadsheet_safe(name: str) -> str:
    """A name as written to a CSV that a person may open in a spreadsheet: one that starts like
    a formula (`=`, `+`, `-`, `@`) gets a leading apostrophe, the spreadsheets' own mark for
    text, so it is never run; reading a CSV removes that mark again (`_unmarked`)."""
    return "'" + name if name.startswith(FORMULA_STARTS) else name


def _unmarked(name: str) -> str:
    return name[1:] if name.startswith("'") and name[1:2] in FORMULA_STARTS else name


def duplicate_issue(line: int, first: int, creator: str, url: str) -> RowIssue:
    message = f"duplicate of line {first}; skipped"
    return RowIssue(line, message, "warning", creator, "cover_url", quoted(url))


def check_line(
    text: str, line: int, layout: CsvLayout, on_issue: Callable[[RowIssue], None]
) -> CoverRow | None:
    """The row of one physical line; BLANK for a blank line, None after reporting why the line
    cannot be used."""
    try:
        record = parse_line(text)
    except csv.Error as error:
        on_issue(RowIssue(line, f"malformed CSV record: {error}", value=quoted(text.rstrip())))
        return None
    return check_record(record, line, layout, on_issue)


def check_record(
    record: list[str], line: int, layout: CsvLayout, on_issue: Callable[[RowIssue], None]
) -> CoverRow | None:
    """The row of a record (its fields); BLANK when every field is blank, None after reporting
    why it cannot be used."""
    if all(not field.strip() for field in record):
        return BLANK
    if len(record) < layout.needed:
        message = f"expected at least {layout.needed} fields, found {len(record)}"
        on_issue(RowIssue(line, message, value=quoted(",".join(record))))
        return None
    creator = _unmarked(unicodedata.normalize("NFC", record[layout.creator_at].strip()))
    url = record[layout.url_at].strip()
    at = layout.updated_at
    stamp = record[at].strip() if at is not None and at < len(record) else ""
    fields = {"creator_name": creator, "cover_url": url, "updated_at": stamp}
    problem = _problem(fields)
    if problem:
        column, message = problem
        on_issue(RowIssue(line, message, "error", creator[:80], column, quoted(fields[column])))
        return None
    if stamp and parse_moment(stamp) is None:
        message = f"updated_at {stamp[:40]!r} is not an ISO date; sorted last"
        on_issue(RowIssue(line, message, "warning", creator[:80], "updated_at", quoted(stamp)))
        stamp = ""
    return CoverRow(line, creator, url, stamp)


def _problem(fields: dict[str, str]) -> tuple[str, str] | None:
    """(the column at fault, why) for a row that cannot be used."""
    for column, value in fields.items():
        if "\ufffd" in value:
            return column, "row is not valid UTF-8"
    creator = fields["creator_name"]
    if not creator:
        return "creator_name", "missing creator_name"
    if len(creator) > MAX_CREATOR_NAME_LENGTH:
        return "creator_name", f"creator_name longer than {MAX_CREATOR_NAME_LENGTH} characters"
    problem = url_problem(fields["cover_url"])
    return ("cover_url", problem[1]) if problem else None


# check_line's answer for a blank line (skipped, and not a data row).
BLANK = CoverRow(0, "", "", "")
