"""Read the workflow's CSV (`creator_name,cover_url,updated_at`) as a stream of checked rows.

The file is decoded as UTF-8 (a BOM is fine), rows may use CRLF and quoted fields with commas
or newlines, columns may come in any order and extra columns are ignored; `updated_at` is
optional. A bad row becomes a `RowIssue` naming its line and the rest goes on; a bad file
(empty, no header, a required column missing, no data rows) raises `CsvFileError`.

Parsing is the csv module's (default dialect), made fast for the common case: lines without a
double quote are split with `str.split` (same fields, a fraction of the cost), lines with one go
through one persistent `csv.reader`. Line numbers count physical lines as `csv.reader.line_num`.
For the split, `read_blocks(..., raw_lines=True)` leaves whole chunks undecoded for numpy
(raw_lines), whose fields are the same as csv.reader's.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from collage.config import MAX_URL_LENGTH

if TYPE_CHECKING:
    from collage.raw_lines import RawLines

REQUIRED_COLUMNS = ("creator_name", "cover_url")
OPTIONAL_COLUMNS = ("updated_at",)
MAX_CREATOR_NAME_LENGTH = 512
# Larger than any field we accept, so an over-long field is reported as such (not as a csv
# module error) while a runaway unclosed quote still cannot eat the whole file into memory.
FIELD_SIZE_LIMIT = 64 * 1024
csv.field_size_limit(FIELD_SIZE_LIMIT)
_WINDOW = (FIELD_SIZE_LIMIT + 1) // 2  # a longer run of characters covers an aligned window
CHUNK_BYTES = 1 << 20  # bytes read at a time (then cut after the last newline)
_NOT_SPACE_OR_CONTROL = bytes(range(33, 128))


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


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where the columns are, from the header."""

    creator_at: int
    url_at: int
    updated_at: int | None

    @property
    def needed(self) -> int:
        """Fields a record needs (updated_at may be missing from short records)."""
        return max(self.creator_at, self.url_at) + 1


class Block:
    """Consecutive CSV records: either uniform columns or a list of records.

    A quote-free run of lines whose records all have the same number of fields is kept as one
    flat list (`fields`: each record's fields then a "\\n" marker, `stride` = width + 1), so
    a column is a slice; other records come as lists of fields. `quoted` marks a record parsed
    by csv.reader (its fields may hold newlines). When asked for, lines may also come
    undecoded, located by numpy (`raw`: whole lines, each ended by a newline, no CR, and no
    quote but those that wrap whole fields).
    """

    __slots__ = ("count", "fields", "first", "lines", "quoted", "raw", "rows", "stride")

    def __init__(
        self,
        first: int,
        count: int,
        *,
        fields: list[str] | None = None,
        stride: int = 0,
        rows: list[list[str]] | None = None,
        lines: list[int] | None = None,
        quoted: bool = False,
        raw: RawLines | None = None,
    ) -> None:
        self.first = first
        self.count = count
        self.fields = fields
        self.stride = stride
        self.rows = rows
        self.lines = lines
        self.quoted = quoted
        self.raw = raw

    @property
    def width(self) -> int:
        """Fields per record of a uniform block, 0 otherwise."""
        return self.stride - 1 if self.fields is not None else 0

    def column(self, index: int) -> list[str]:
        """One column of a uniform block."""
        assert self.fields is not None
        return self.fields[index :: self.stride]

    def records(self) -> list[list[str]]:
        if self.rows is not None:
            return self.rows
        if self.raw is not None:
            return list(map(self.raw.line, range(self.raw.count)))
        assert self.fields is not None
        fields, stride = self.fields, self.stride
        rows = [fields[at : at + stride - 1] for at in range(0, self.count * stride, stride)]
        if stride == 2:  # one field a line: csv.reader makes an empty line []
            rows = [row if row[0] else [] for row in rows]
        return rows

    def line_numbers(self) -> range | list[int]:
        return self.lines if self.lines is not None else range(self.first, self.first + self.count)


def parse_moment(text: str) -> datetime | None:
    """ISO 8601 date or date-time (naive means UTC) as an aware datetime; None if unparseable."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_timestamp(text: str) -> float | None:
    """ISO 8601 date or date-time (naive means UTC) to epoch seconds; None if unparseable."""
    moment = parse_moment(text)
    return None if moment is None else moment.timestamp()


def normalise_creator(name: str) -> str:
    """The creator key: trimmed and NFC-normalised, so visually equal names group together."""
    return unicodedata.normalize("NFC", name.strip())


def check_url(url: str) -> str | None:
    """Why `url` cannot be a cover URL, or None if it looks fine (reachability is checked later)."""
    if not url:
        return "missing cover_url"
    if len(url) > MAX_URL_LENGTH:
        return f"cover_url longer than {MAX_URL_LENGTH} characters"
    if (
        url.encode().translate(None, _NOT_SPACE_OR_CONTROL)
        if url.isascii()  # ASCII whitespace is space or a control character: bytes are faster
        else any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
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


def _layout(header: list[str]) -> CsvLayout:
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
    return CsvLayout(index["creator_name"], index["cover_url"], index.get("updated_at"))


class _Tokenizer:
    """Blocks of CSV records from a byte stream, with the csv module's fields and line numbers.

    The stream is read in chunks cut after their last newline (a UTF-8 character never
    contains a newline byte, so each chunk decodes on its own). Quote-free runs of lines are
    split with str.split; a line with a quote, a lone CR or an over-long line goes through a
    csv.reader fed one physical line at a time (TextIOWrapper's newline='' rule), which may
    pull further chunks for a quoted field that spans them.
    """

    def __init__(self, raw: IO[bytes], chunk_bytes: int) -> None:
        self._raw = raw
        self._chunk_bytes = chunk_bytes
        self._tail: list[bytes] = []
        self._first = True
        self.text = ""
        self.pos = 0
        self.line = 0  # physical lines consumed
        self._reader = csv.reader(self._lines())

    def _read_chunk(self) -> bytes | None:
        """The next chunk of whole lines (the last may lack its newline), None at the end."""
        while True:
            data = self._raw.read(self._chunk_bytes)
            if not data:
                if not self._tail:
                    return None
                chunk, self._tail = b"".join(self._tail), []
                return chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                chunk = b"".join([*self._tail, data[:cut]])
                self._tail = [data[cut:]] if cut < len(data) else []
                return chunk
            self._tail.append(data)

    def _refill(self) -> bool:
        """Load the next chunk of whole lines into `text`; False at the end of the data."""
        chunk = self._read_chunk()
        if chunk is None:
            return False
        self._set_text(chunk)
        return True

    def _set_text(self, chunk: bytes) -> None:
        # 'replace' keeps going past invalid bytes; rows that contain U+FFFD are then reported.
        self.text = chunk.decode("utf-8-sig" if self._first else "utf-8", "replace")
        self._first = False
        self.pos = 0

    def _lines(self) -> Iterator[str]:
        """Physical lines as TextIOWrapper(newline='') yields them: ended by LF, CRLF or CR."""
        while True:
            text, pos = self.text, self.pos
            if pos >= len(text):
                if not self._refill():
                    return
                continue
            end = text.find("\n", pos) + 1 or len(text)
            cr = text.find("\r", pos, end)
            if cr != -1 and text[cr + 1 : cr + 2] != "\n":
                end = cr + 1  # a lone CR ends the line
            self.pos = end
            self.line += 1
            yield text[pos:end]

    def header(self) -> list[str]:
        try:
            return next(self._reader)
        except StopIteration:
            raise CsvFileError("CSV file is empty") from None
        except csv.Error as error:
            raise CsvFileError(f"CSV header cannot be read: {error}") from None

    def blocks(self, on_issue: Callable[[RowIssue], None], raw: bool = False) -> Iterator[Block]:
        while True:
            text, pos = self.text, self.pos
            if pos >= len(text):
                chunk = self._read_chunk()
                if chunk is None:
                    return
                if raw:
                    from collage.raw_lines import RawLines  # numpy: only for the split

                    lines, rest = _raw_lines(chunk, quotes=True)
                    block = RawLines(lines) if lines else None
                    if block is not None and not block.simple:  # csv.reader from the 1st quote
                        lines, rest = _raw_lines(chunk, quotes=False)
                        block = RawLines(lines) if lines else None
                    if block is not None:
                        yield Block(self.line + 1, block.count, raw=block)
                        self.line += block.count
                    chunk = rest
                self._set_text(chunk)
                continue
            quote = text.find('"', pos)
            end = len(text) if quote == -1 else text.rfind("\n", pos, quote) + 1
            if end > pos:
                block = self._split(text, pos, end)
                if block is not None:
                    yield block
                    continue
            else:
                end = pos + 1  # the line at `pos` holds a quote: one record via csv.reader
            # csv.reader up to `end`; a quoted field may carry it into the next chunk.
            while self.text is text and self.pos < end:
                start = self.line + 1
                try:
                    record = next(self._reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    on_issue(RowIssue(start, f"malformed CSV record: {error}"))
                    continue
                yield Block(start, 1, rows=[record], lines=[start], quoted=True)

    def _split(self, text: str, pos: int, end: int) -> Block | None:
        """The quote-free lines text[pos:end] split on commas; None if csv.reader must do it."""
        segment = text if pos == 0 and end == len(text) else text[pos:end]
        if "\r" in segment:
            if segment.count("\r") != segment.count("\r\n"):
                return None  # a lone CR is a line break of its own
            segment = segment.replace("\r\n", "\n")
        # Every record, then a "\n" field as a marker: a uniform block if the markers line up.
        fields = segment.replace("\n", ",\n,").split(",")
        count = segment.count("\n") + 1  # records: the markers left, plus one
        if segment.endswith("\n"):
            del fields[-2:]  # the last marker and the empty rest after it
            count -= 1
        stride, uneven = divmod(len(fields) + 1, count)
        if not uneven and fields[stride - 1 :: stride].count("\n") == count - 1:
            if _may_hold_long_line(segment) and max(map(len, fields)) > FIELD_SIZE_LIMIT:
                return None  # csv.reader reports the over-long field
            block = Block(self.line + 1, count, fields=fields, stride=stride)
        else:
            lines = (segment[:-1] if segment.endswith("\n") else segment).split("\n")
            if _may_hold_long_line(segment) and max(map(len, lines)) > FIELD_SIZE_LIMIT:
                return None
            rows = [line.split(",") if line else [] for line in lines]
            block = Block(self.line + 1, count, rows=rows)
        self.line += count
        self.pos = end
        return block


def _raw_lines(chunk: bytes, quotes: bool) -> tuple[bytes, bytes]:
    """(the chunk's whole lines, or with `quotes` False those before its first quote, with
    CRLF made LF; the rest of the chunk).

    The lines are left to the caller as bytes (raw_lines); the rest goes through the text
    path. A lone CR or a line that may be over-long leaves it all there.
    """
    quote = -1 if quotes else chunk.find(b'"')
    cut = chunk.rfind(b"\n", 0, len(chunk) if quote == -1 else quote) + 1
    lines = chunk[:cut]
    if b"\r" in lines:
        if lines.count(b"\r") != lines.count(b"\r\n"):
            return b"", chunk
        lines = lines.replace(b"\r\n", b"\n")
    if _may_hold_long_line(lines) and max(map(len, lines.split(b"\n"))) > FIELD_SIZE_LIMIT:
        return b"", chunk  # csv.reader reports the over-long field
    return lines, chunk[cut:]


def _may_hold_long_line(text: str | bytes) -> bool:
    """Could a line of `text` be longer than FIELD_SIZE_LIMIT? False is sure, True may not be.

    A line that long covers a whole aligned window of _WINDOW characters, which then holds no
    newline: a few finds instead of one len() per field.
    """
    if len(text) <= FIELD_SIZE_LIMIT:
        return False
    find, newline = text.find, "\n" if isinstance(text, str) else b"\n"
    return any(find(newline, at, at + _WINDOW) == -1 for at in range(0, len(text), _WINDOW))


def read_blocks(
    raw: IO[bytes],
    on_issue: Callable[[RowIssue], None],
    chunk_bytes: int = CHUNK_BYTES,
    *,
    raw_lines: bool = False,
) -> tuple[CsvLayout, Iterator[Block]]:
    """The layout from the header, and the data records in blocks (blank lines included).

    Raises CsvFileError at once for an empty file or a bad header. Malformed records are
    reported to `on_issue` and left out. `raw_lines`: quote-free lines may come as bytes.
    """
    tokenizer = _Tokenizer(raw, chunk_bytes)
    layout = _layout(tokenizer.header())
    return layout, tokenizer.blocks(on_issue, raw_lines)


def is_blank(record: list[str]) -> bool:
    return not record or all(not field.strip() for field in record)


def read_rows(
    raw: IO[bytes],
    on_issue: Callable[[RowIssue], None],
) -> Iterator[CoverRow]:
    """Yield every usable row of the CSV in `raw`; call `on_issue` for every problem row.

    Raises CsvFileError for problems with the file as a whole. Exact duplicate rows (same
    creator and URL) are kept once, with a warning naming the first occurrence.
    """
    layout, blocks = read_blocks(raw, on_issue)
    seen: dict[tuple[str, str], int] = {}
    data_rows = 0
    for block in blocks:
        for line, record in zip(block.line_numbers(), block.records(), strict=True):
            if is_blank(record):
                continue
            data_rows += 1
            row = check_record(record, line, layout, on_issue)
            if row is None:
                continue
            first = seen.setdefault((row.creator, row.url), line)
            if first != line:
                on_issue(
                    RowIssue(line, f"duplicate of line {first}; skipped", "warning", row.creator)
                )
                continue
            yield row
    if data_rows == 0:
        raise CsvFileError("CSV file has a header but no data rows")


def check_record(
    record: list[str],
    line: int,
    layout: CsvLayout,
    on_issue: Callable[[RowIssue], None],
) -> CoverRow | None:
    """The row of a non-blank record, or None after reporting why it cannot be used."""
    needed = layout.needed
    if len(record) < needed:
        on_issue(RowIssue(line, f"expected at least {needed} fields, found {len(record)}"))
        return None
    creator = normalise_creator(record[layout.creator_at])
    url = record[layout.url_at].strip()
    updated_at = layout.updated_at
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
        on_issue(bad_stamp_issue(line, stamp_text, shown))
        stamp_text = ""
    return CoverRow(line, creator, url, stamp_text, timestamp)


def bad_stamp_issue(line: int, stamp_text: str, shown: str) -> RowIssue:
    return RowIssue(
        line, f"updated_at {stamp_text[:40]!r} is not an ISO date; sorted last", "warning", shown
    )


def tile_order_key(row: CoverRow) -> tuple[int, float, int]:
    """The tile order: newest `updated_at` first, rows without one last, ties in CSV order."""
    if row.timestamp is None:
        return (1, 0.0, row.line)
    return (0, -row.timestamp, row.line)
