"""Pass 1 of the split: a CSV's lines into checked rows, each with its creator's id.

Chunks of whole lines are parsed two at a time on threads. Arrow's kernels settle the rows
that are plainly fine (NAME_OK, PLAIN_URL, STAMP_*); csv_input's rules read the other lines
(tests/unit/test_split_equivalence.py holds the two to the same answers). A line over
MAX_LINE_BYTES is skipped as it streams past, unheld.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial, reduce
from itertools import chain

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from collage import csv_input as rules
from collage.config import MAX_URL_LENGTH
from collage.csv_input import MAX_LINE_BYTES, CsvFileError, CsvLayout, RowIssue
from collage.engine.url_guard import PLAIN_URL

UNDATED = -(1 << 62)  # below every date (years 1-9999): newest first puts it last
# What Arrow settles alone. A name: nothing for str.strip to take at either end, no control,
# format or line-separator character, no U+FFFD. A URL: see PLAIN_URL. A date: the ISO forms
# that Arrow casts exactly as datetime.fromisoformat parses them.
_EDGE = r"[^\s\x{85}\p{Z}\p{C}\x{fffd}]"
NAME_OK = rf"^{_EDGE}(?:[^\p{{Cc}}\p{{Cf}}\p{{Zl}}\p{{Zp}}\x{{fffd}}]*{_EDGE})?$"
_TIME = r"[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
_ZONE = r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
STAMP_NAIVE = rf"^\d{{4}}-\d\d-\d\d(?:{_TIME})?$"
STAMP_ZONED = rf"^\d{{4}}-\d\d-\d\d{_TIME}{_ZONE}$"
_CHECKED = pa.schema(
    [("creator", pa.string()), ("url", pa.string()), ("key", pa.int64()), ("line", pa.int64())]
)
ROWS = pa.schema([("part", pa.int32()), ("id", pa.int64()), *list(_CHECKED)[1:]])
_BREAK = re.compile(rb"\r\n?|\n")
_QUOTED_BYTES = 4 * rules.MAX_QUOTED  # of a long line's start, enough for MAX_QUOTED characters
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _LongLine:
    """A line over MAX_LINE_BYTES, skipped as it streamed past, but for its start."""

    start: bytes


def line_chunks(pieces: Iterator[bytes], size: int) -> Iterator[bytes | _LongLine]:
    """Runs of whole lines of about `size` bytes; a line longer than MAX_LINE_BYTES is skipped
    as it streams past, unheld, and comes as a _LongLine."""
    held = b""
    for piece in pieces:
        data = held + piece
        body = data[:-1] if data.endswith(b"\r") else data  # that CR may be half of a CRLF
        cut = max(body.rfind(b"\n"), body.rfind(b"\r")) + 1  # where the last whole line ends
        if len(data) - cut > MAX_LINE_BYTES:
            yield from [data[:cut]] if cut else []
            yield _LongLine(data[cut : cut + _QUOTED_BYTES])
            held = _after_line(pieces)
        elif cut >= size:
            yield data[:cut]
            held = data[cut:]
        else:
            held = data
    if held:
        yield held


def _after_line(pieces: Iterator[bytes]) -> bytes:
    """What follows the end of the line that `pieces` are in, read up to it."""
    for piece in pieces:
        if found := _BREAK.search(piece):
            rest = piece[found.end() :]
            if found.group() == b"\r" and not rest:  # the next piece may start with its LF
                rest = next(pieces, b"").removeprefix(b"\n")
            return rest
    return b""


class RowReader:
    """Pass 1: chunks of lines into checked rows, each with its creator's id."""

    def __init__(
        self, chunks: Iterator[bytes | _LongLine], report: Callable[[RowIssue], None]
    ) -> None:
        too_long = CsvFileError(f"CSV header is longer than {MAX_LINE_BYTES:,} bytes")
        data = next(chunks, b"")
        if isinstance(data, _LongLine):
            raise too_long
        if not data:
            raise CsvFileError("CSV file is empty")
        found = _BREAK.search(data)
        end = found.end() if found else len(data)
        if end > MAX_LINE_BYTES + 2:  # its line break included
            raise too_long
        self.layout = rules.layout_of(rules.header_of(data[:end].decode("utf-8", "replace")))
        self.report, self.data_rows, self.line = report, 0, 2  # the next chunk's first line
        self.chunks = chain([data[end:]], chunks)
        self.names = pa.array([], pa.string())  # the creators, in order of first appearance

    def batches(self, per_part: int) -> Iterator[pa.RecordBatch]:
        for chunk in ahead(partial(_checked, layout=self.layout), self.chunks):
            shift, self.line = self.line - 1, self.line + chunk.lines
            for issue in chunk.issues:
                self.report(replace(issue, line=issue.line + shift))
            self.data_rows += chunk.data_rows
            if chunk.rows.num_rows:
                rows = chunk.rows.set_column(3, "line", pc.add(chunk.rows["line"], shift))
                yield self._with_ids(rows, per_part)

    def _with_ids(self, rows: pa.Table, per_part: int) -> pa.RecordBatch:
        """The rows with their creators' ids: the rank of each one's first appearance."""
        encoded = rows["creator"].combine_chunks()  # dictionary-encoded by the worker
        seen = pc.index_in(encoded.dictionary, value_set=self.names)  # null: a new creator
        new = pc.is_null(seen)
        ranks = pc.add(pc.cumulative_sum(new.cast(pa.int64())), len(self.names) - 1)
        self.names = pa.concat_arrays([self.names, encoded.dictionary.filter(new)])
        ids = pc.take(pc.if_else(new, ranks, seen.cast(pa.int64())), encoded.indices)
        part = pc.divide(ids, per_part).cast(pa.int32())
        columns = [part, ids, rows["url"], rows["key"], rows["line"]]
        return pa.Table.from_arrays(columns, schema=ROWS).combine_chunks().to_batches()[0]


@dataclass
class _Chunk:
    """A chunk's usable rows (creator dictionary-encoded, url, key, line) and its issues, in
    line order, with line numbers counted from 1 in the chunk (the reader shifts them)."""

    rows: pa.Table
    issues: list[RowIssue]
    data_rows: int  # lines that are not blank
    lines: int


def _checked(data: bytes | _LongLine, layout: CsvLayout) -> _Chunk:
    """One chunk, on a worker thread: Arrow parses it and settles the plain rows, Python
    checks the other lines; a chunk Arrow cannot read one record a line goes to Python whole."""
    if isinstance(data, _LongLine):
        return _Chunk(_CHECKED.empty_table(), [_long_line_issue(1, data.start)], 1, 1)
    line_ends = _line_ends(data)
    parsed = None if line_ends is None else _parse(data, layout)
    if line_ends is None or parsed is None or len(parsed[0]) + len(parsed[1]) != len(line_ends):
        every = data.splitlines()
        return _encoded(_python_rows(enumerate(every, 1), layout, len(every)))
    table, odd = parsed
    count = len(line_ends)
    numbers = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count))  # 1, 2, ...
    if odd:
        numbers = numbers.filter(pc.invert(pc.is_in(numbers, pa.array(odd, pa.int64()))))
    rows, fine = _settle(table, numbers)
    slow = sorted([*odd, *numbers.filter(pc.invert(fine)).to_pylist()])
    if not slow:
        return _encoded(_Chunk(rows, [], count, count))
    bounds = [0, *pc.add(line_ends, 1).to_pylist()]  # line n: bounds[n - 1] to bounds[n] - 1
    text = [(n, data[bounds[n - 1] : bounds[n] - 1]) for n in slow]
    checked = _python_rows(text, layout, count)
    rows = pa.concat_tables([rows.filter(fine), checked.rows]).sort_by("line")
    data_rows = checked.data_rows + count - len(slow)
    return _encoded(replace(checked, rows=rows, data_rows=data_rows))


def _encoded(chunk: _Chunk) -> _Chunk:
    """The chunk with its creators dictionary-encoded (on the worker, for _with_ids)."""
    creators = pc.dictionary_encode(chunk.rows["creator"].combine_chunks())
    return replace(chunk, rows=chunk.rows.set_column(0, "creator", creators))


def _line_ends(data: bytes) -> pa.Array | None:
    """Where each line of `data` ends (at its LF, or the end of `data`), or None when Python is
    to read them: a lone CR ends a line, or a line is over MAX_LINE_BYTES (both rare), or
    there are none."""
    if not data or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")):
        return None
    pieces = pc.list_flatten(pc.split_pattern(pa.array([data], pa.binary()), "\n"))
    lengths = pc.binary_length(pieces).cast(pa.int64())
    if pc.max(lengths).as_py() > MAX_LINE_BYTES:
        return None
    ends = pc.subtract(pc.cumulative_sum(pc.add(lengths, 1)), 1)
    return ends[:-1] if data.endswith(b"\n") else ends


def _long_line_issue(line: int, text: bytes) -> RowIssue:
    start = rules.quoted(text[:_QUOTED_BYTES].decode("utf-8", "replace"))
    return RowIssue(line, f"line longer than {MAX_LINE_BYTES:,} bytes", value=start)


def _python_rows(lines: Iterable[tuple[int, bytes]], layout: CsvLayout, count: int) -> _Chunk:
    """csv_input's rules on each (line number, line) of a chunk of `count` lines."""
    issues: list[RowIssue] = []
    rows, data_rows = [], 0
    for number, line in lines:
        if len(line) > MAX_LINE_BYTES:
            issues.append(_long_line_issue(number, line))
            data_rows += 1
            continue
        row = rules.check_line(line.decode("utf-8", "replace"), number, layout, issues.append)
        data_rows += row is not rules.BLANK
        if row is not None and row is not rules.BLANK:
            rows.append((row.creator, row.url, _moment_key(row.updated_at), row.line))
    columns = list(zip(*rows, strict=True)) or [()] * 4
    table = pa.Table.from_arrays(columns, schema=_CHECKED)
    return _Chunk(table, issues, data_rows, count)


def _parse(data: bytes, layout: CsvLayout) -> tuple[pa.Table, list[int]] | None:
    """Arrow's fields of a chunk (only the columns the rules read) and the numbers of the lines
    whose field count is off; None when the chunk is not UTF-8."""
    odd: list[int] = []

    def set_aside(row: pa_csv.InvalidRow) -> str:
        odd.append(row.number)
        return "skip"

    names = [f"c{n}" for n in range(layout.width)]
    used = [names[at] for at in layout.used]
    try:
        pa.array([data], pa.binary()).cast(pa.string())  # Arrow's UTF-8 check, all at once
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
            pa_csv.ParseOptions(ignore_empty_lines=False, invalid_row_handler=set_aside),
            pa_csv.ConvertOptions(
                column_types=dict.fromkeys(used, pa.string()), include_columns=used
            ),
        )
    except pa.ArrowInvalid:
        return None
    return table, odd


def _settle(table: pa.Table, line: pa.Array) -> tuple[pa.Table, pa.Array]:
    """(the rows as Arrow reads them: creator, url, key, line; which of them Arrow settles)."""
    name, url = table[0].combine_chunks(), table[1].combine_chunks()
    key, dated = _stamp_keys(table[2] if table.num_columns > 2 else None, len(line))
    fine = [
        dated,
        pc.match_substring_regex(name, NAME_OK),
        pc.invert(pc.starts_with(name, "'")),  # maybe a spreadsheet's text mark: csv_input's
        pc.less_equal(pc.utf8_length(name), rules.MAX_CREATOR_NAME_LENGTH),
        pc.match_substring_regex(url, PLAIN_URL),
        pc.less_equal(pc.binary_length(url), MAX_URL_LENGTH),
    ]
    fast = pa.Table.from_arrays([_nfc(name), url, key, line], schema=_CHECKED)
    return fast, reduce(pc.and_, fine)


def _nfc(name: pa.Array) -> pa.Array:
    """NFC as unicodedata gives it (the tables csv_input uses): Arrow's utf8_normalize does
    not compose here. Each distinct name that is not ASCII is normalised once."""
    others = pc.unique(pc.filter(name, pc.invert(pc.string_is_ascii(name))))
    if not len(others):
        return name
    normal = pa.array([unicodedata.normalize("NFC", n) for n in others.to_pylist()], pa.string())
    return pc.coalesce(pc.take(normal, pc.index_in(name, value_set=others)), name)


def _stamp_keys(stamp: pa.ChunkedArray | None, rows: int) -> tuple[pa.Array, pa.Array]:
    """(microseconds since 1970 UTC or UNDATED, whether Arrow settled the date) per row."""
    if stamp is None:
        return pa.repeat(pa.scalar(UNDATED, pa.int64()), rows), pa.repeat(True, rows)
    stamp = stamp.combine_chunks()
    keys = pc.if_else(pc.equal(pc.binary_length(stamp), 0), UNDATED, pa.nulls(rows, pa.int64()))
    for pattern, kind in (
        (STAMP_NAIVE, pa.timestamp("us")),
        (STAMP_ZONED, pa.timestamp("us", "UTC")),
    ):
        mask = pc.match_substring_regex(stamp, pattern)
        try:
            values = pc.filter(stamp, mask).cast(kind).cast(pa.int64())
        except pa.ArrowInvalid:  # a date that is none (Feb 30): Python decides those rows
            continue
        keys = pc.replace_with_mask(keys, mask, values)
    return pc.fill_null(keys, 0), pc.is_valid(keys)


def _moment_key(stamp: str) -> int:
    moment = rules.parse_moment(stamp)
    return UNDATED if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)


def ahead[T, R](function: Callable[[T], R], items: Iterable[T], depth: int = 2) -> Iterator[R]:
    """function(item) for each item, in order, `depth` at a time on threads: Arrow releases
    the GIL, so a 2-vCPU Lambda (3,009 MB or more) works on two chunks at once."""
    with ThreadPoolExecutor(depth) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
