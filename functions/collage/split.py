"""Split a CSV into one map item per creator, in tile order, cut to `max_images_per_creator`.

The items are written as one JSON array (the Distributed Map's ItemReader input); each item is
small (at most 100 URLs of at most 2 KiB), so every child's input stays far below the 256 KiB
payload limit however large the CSV is.

Built for a month's CSV (2M+ rows, random creator order) in bounded memory, in two passes. On
CPython the cost is in per-row objects and cache misses, so a row is handled a column at a
time, by C loops (join, split, slicing) and numpy arrays, never by a Python statement:
1. stream the CSV (csv_input.read_blocks) and take each block (~5,000 rows) column by column.
   Lines stay bytes (raw_lines): numpy finds their commas, newlines and quotes, looks the
   raw names up in a hash table of the names seen (an index is the rank of the creator's
   first appearance), checks the URLs' heads and bytes, and parses the dates of the usual
   fixed forms into integer microseconds since 1970 UTC; the URLs alone become objects.
   Other lines (a file's first chunk, quoting beyond whole-field wrappers) take the same
   checks on str columns, or csv.reader's records one by one.
   parse_moment decides the other dates (bad ones are reported then). A row that these do
   not settle (a name to normalise, an odd URL) takes the full check, in CSV order where it
   could make a new creator. After each block the rows are sorted by partition
   (`index // partition_creators`, a numpy radix sort while the block is still in the CPU
   cache) and spilled: per partition the creator indexes, lines, date keys and URL hashes as
   raw arrays, the URLs newline-joined, gathered into records of about `record_bytes`.
   Records stay in memory up to `spill_memory` bytes, then go to a temp file in `spill_dir`.
2. partition by partition (its rows arrive in CSV order): a creator whose URL hashes repeat
   (a duplicate, or rarely a collision) goes row by row, exactly; the others are ordered by
   (creator, date newest first, line) with one stable numpy sort, cut, and written by one
   join of the partition's URLs and the glue between them. The partitions are in
   first-appearance order, so the items come out in it without a merge.
Memory: O(flush_rows + chunk_bytes + spill_memory + creators + one partition), whatever the
number of rows; the temp file holds the rest (a little less than the CSV). numpy is imported
by this module only, which the split step alone loads. `benchmarks/split_bench.py` measures it
on 2,000,000 rows.
"""

from __future__ import annotations

import gc
import json
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, compress, repeat
from operator import attrgetter
from typing import IO

import numpy as np

from collage.config import MAX_URL_LENGTH
from collage.csv_input import (
    MAX_CREATOR_NAME_LENGTH,
    Block,
    CsvFileError,
    CsvLayout,
    RowIssue,
    bad_stamp_issue,
    check_record,
    is_blank,
    parse_moment,
    read_blocks,
)
from collage.naming import MAX_SAFE_NAME, safe_segment
from collage.raw_lines import NameKeys, NameTable, RawLines

# A URL that is printable ASCII without spaces, at most MAX_URL_LENGTH long, and starts with
# http(s)://host/ (host: letters, digits, dots, dashes) always passes csv_input.check_url: the
# host is delimited by that '/', the rest cannot make urlsplit fail.
_URL_OK = re.compile(r"https?://[A-Za-z0-9.-]+/[!-~]*")
_URL_START = re.compile(r"https?://[A-Za-z0-9.-]+/").match
_URL_BYTES = bytes([10, *range(33, 127)])  # deleted by translate: a clean column leaves b""
_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses
_by_line = attrgetter("line")

# Dates are kept as microseconds since 1970 UTC: exact, and ordered as the moments are.
UNDATED = -(1 << 62)  # below every date (years 1-9999), so newest-first puts it last
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365])
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0])
_YEARS = np.arange(10_000)
_LEAP = (_YEARS % 4 == 0) & ((_YEARS % 100 != 0) | (_YEARS % 400 == 0))
# Days from 1970-01-01 to January 1st of each year (proleptic Gregorian, as datetime counts).
_YEAR_DAYS = (_YEARS - 1) * 365 + (_YEARS - 1) // 4 - (_YEARS - 1) // 100 + (_YEARS - 1) // 400
_YEAR_DAYS -= _YEAR_DAYS[1970]
# The forms numpy parses (what parse_moment reads as that UTC moment: "T" or " " before the
# time, then "Z", "+00:00" or nothing); any other text goes through parse_moment. "d" stands
# for a digit; by length, the lowest code and the span of codes at each position ("T" checked
# apart), and each form as a line with its digits as "d" (a space may stand for the "T").
_FORMS = [b"dddd-dd-dd", b"dddd-dd-ddTdd:dd:dd", b"dddd-dd-ddTdd:dd:ddZ"]
_FORMS.append(b"dddd-dd-ddTdd:dd:dd+00:00")
_LOWS = bytes.maketrans(b"dT", b"0\0")
_SPANS = bytes(9 if code == ord("d") else 255 if code == ord("T") else 0 for code in range(256))
_SHAPES = {
    len(form): (
        np.frombuffer(form.translate(_LOWS), dtype=np.uint8),
        np.frombuffer(form.translate(_SPANS), dtype=np.uint8),
    )
    for form in _FORMS
}
_DIGITS_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")
_SHAPE_LINES = {
    len(form): {
        (form + b"\n").translate(_DIGITS_AS_D),
        (form.replace(b"T", b" ") + b"\n").translate(_DIGITS_AS_D),
    }
    for form in _FORMS
}


def moment_key(moment: datetime | None) -> int:
    """A parsed updated_at (aware, as parse_moment gives it) as the integer that sorts it."""
    return UNDATED if moment is None else (moment - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class SplitLimits:
    """Memory knobs of split_csv (tests make them tiny to exercise every path)."""

    chunk_bytes: int = 1 << 20  # CSV bytes read and checked at a time
    flush_rows: int = 4096  # rows held unspilled (about a block: spilled while in the cache)
    spill_memory: int = 256 << 20  # spilled bytes kept in memory before using the temp file
    partition_creators: int = 512  # creators sorted together in pass 2 (a power of two)
    record_bytes: int = 64 << 10  # a partition's spilled rows are gathered into records this big
    listed_issues: int = 10_000  # row issues kept in the summary (all are counted and reported)


@dataclass
class SplitSummary:
    rows: int = 0  # usable rows
    creators: int = 0
    covers: int = 0  # covers that will be rendered (after the per-creator cut)
    covers_cut: int = 0  # covers beyond max_images_per_creator
    # The issues with the lowest line numbers, in line order: at most SplitLimits.listed_issues
    # (a CSV whose every row has a bad date would otherwise hold millions); on_issue sees all.
    issues: list[RowIssue] = field(default_factory=list)
    expected: list[tuple[str, str]] = field(default_factory=list)  # (creator, key name)
    rows_rejected: int = 0  # issues of severity "error", listed or not
    row_warnings: int = 0

    @property
    def issues_unlisted(self) -> int:
        return self.rows_rejected + self.row_warnings - len(self.issues)

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_rejected": self.rows_rejected,
            "row_warnings": self.row_warnings,
            "row_issues_unlisted": self.issues_unlisted,
            "creators": self.creators,
            "covers": self.covers,
            "covers_cut": self.covers_cut,
        }

    def add_issue(self, issue: RowIssue, listed: int) -> None:
        if issue.severity == "error":
            self.rows_rejected += 1
        else:
            self.row_warnings += 1
        self.issues.append(issue)
        if len(self.issues) >= 2 * listed:  # trimmed now and then: amortised O(1) an issue
            self.trim_issues(listed)

    def trim_issues(self, listed: int) -> None:
        self.issues.sort(key=_by_line)
        del self.issues[listed:]


def split_csv(
    raw: IO[bytes],
    out: IO[bytes],
    max_images: int,
    on_issue: Callable[[RowIssue], None] | None = None,
    *,
    spill_dir: str | None = None,
    limits: SplitLimits = SplitLimits(),
) -> SplitSummary:
    """Read the CSV from `raw`, write the JSON array of creator items to `out`.

    Items come in order of the creators' first appearance, each with its covers in tile order
    (newest `updated_at` first, undated last, ties in CSV order). `on_issue` sees each issue
    as it is found (duplicate warnings come in the second pass); `summary.issues` lists the
    first `limits.listed_issues` of them in line order and counts them all. Raises
    csv_input.CsvFileError when the file as a whole is unusable.
    """
    summary = SplitSummary()
    listed = max(1, limits.listed_issues)

    def report(issue: RowIssue) -> None:
        summary.add_issue(issue, listed)
        if on_issue:
            on_issue(issue)

    # Many small live objects and no cycles: the cyclic collector would only rescan them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        layout, blocks = read_blocks(raw, report, limits.chunk_bytes, raw_lines=True)
        with _Spill(spill_dir, limits) as spill:
            shift = max(0, limits.partition_creators - 1).bit_length()  # a power of two
            creators = _Creators(layout, report, shift)
            creators.collect(blocks, spill, limits.flush_rows)
            if not creators.names and not creators.nonblank:
                raise CsvFileError("CSV file has a header but no data rows")
            _write_items(creators.names, shift, spill, out, max_images, report, summary)
    finally:
        if collecting:
            gc.enable()
    summary.trim_issues(listed)
    return summary


class _Creators:
    """Pass 1: every usable row as (creator index, line, date key, URL hash, URL), spilled by
    partition, each partition's rows in CSV order."""

    def __init__(self, layout: CsvLayout, report: Callable[[RowIssue], None], shift: int) -> None:
        self.layout = layout
        self.report = report
        self.shift = shift
        self.names: list[str] = []  # normalised creator names, by index
        self.by_name: dict[str, int] = {}  # normalised name -> index
        self.by_field: dict[str, int] = {}  # raw creator_name field -> index
        self.by_bytes = NameTable()  # the same for raw blocks, as bytes (most of them)
        self.nonblank = 0  # records that went through the full check and were not blank
        # Pending rows: arrays by block, the URLs (UTF-8) in the same order.
        # ids, lines, keys, URL hashes (these four are spilled), URL lengths in bytes
        self.columns: list[tuple[np.ndarray, ...]] = []
        self.urls: list[bytes] = []
        self.checked: tuple[list, list, list, list] = ([], [], [], [])  # full-check rows
        self.block_at = (0, 0)  # where the current block's rows start in columns and urls

    def collect(self, blocks: Iterator[Block], spill: _Spill, flush_rows: int) -> None:
        needed = self.layout.needed
        rows, compact_at, compacted = 0, 1 << 18, 0
        for block in blocks:
            if block.quoted:  # fields may hold newlines: always the full check
                for line, record in zip(block.line_numbers(), block.records(), strict=True):
                    self._check(record, line)
            else:
                self._settle()  # the rows before this block come first
                self.block_at = (len(self.columns), len(self.urls))
                if block.raw is not None:
                    self._take_raw(block.first, block.raw)
                elif block.width >= needed:
                    self._take_uniform(block)
                else:
                    self._take_records(block)
                self._end_block()
            pending = len(self.urls) + len(self.checked[0])
            if pending >= flush_rows:
                self._flush(spill)
                rows += pending
                if rows >= compact_at:  # at 256k rows, 512k, 1M...: O(creators) in all
                    compact_at *= 2
                    if len(self.by_field) > compacted * 1.1:
                        # Fresh copies of the keys and values sit together in memory: fewer
                        # cache and TLB misses on the lookups.
                        indexes = list(range(len(self.names)))
                        self.by_field = {_copy(k): indexes[v] for k, v in self.by_field.items()}
                        compacted = len(self.by_field)
        self._flush(spill)
        self.by_field.clear()  # not needed any more: free them before pass 2
        self.by_name.clear()

    def _take_raw(self, first: int, rows: RawLines) -> None:
        """Lines as bytes: _take_columns' checks, a whole column at a time by numpy
        (raw_lines); a row they do not settle takes the full check, new names in CSV order."""
        layout, count = self.layout, rows.count
        lines = np.arange(first, first + count, dtype=np.int64)
        usable = rows.fields >= layout.needed
        url_at, url_end = rows.field(layout.url_at)
        fine = usable & ~rows.odd_bytes(url_at, url_end)
        for at in np.flatnonzero(fine & ~rows.plain_urls(url_at, url_end)).tolist():
            fine[at] = _url_fine(rows.text(url_at, url_end, at).decode())  # http, long hosts
        keys = np.full(count, UNDATED, dtype=np.int64)
        parsed = np.ones(count, dtype=bool)
        stamp_at = stamp_end = lines  # no updated_at column: every row is undated, parsed
        if layout.updated_at is not None:
            dated = rows.fields > layout.updated_at
            stamp_at, stamp_end = (
                np.where(dated, bound, 0) for bound in rows.field(layout.updated_at)
            )
            fine &= ~rows.odd_bytes(stamp_at, stamp_end)  # spaces, non-ASCII: the full check
            keys, parsed = _raw_stamp_keys(rows, stamp_at, stamp_end)
        name_at, name_end = rows.field(layout.creator_at)
        names = NameKeys(rows, name_at, name_end)
        ids = np.where(usable, self.by_bytes.find(names), -1)

        def name_of(at: int) -> str | None:
            return (
                rows.text(name_at, name_end, at).decode("utf-8", "replace") if usable[at] else None
            )

        def stamp_of(at: int) -> str:
            return rows.text(stamp_at, stamp_end, at).decode()  # printable ASCII: checked

        done, learnt = self._resolve(ids, fine, keys, parsed, lines, name_of, stamp_of, rows.line)
        if learnt[0]:
            self.by_bytes.add(names, *learnt)
        good = np.flatnonzero(fine & ~done)
        urls = rows.texts(url_at, url_end, good)
        # Hashed while they are in the CPU cache, for the duplicate check in pass 2.
        hashes = np.fromiter(map(hash, urls), np.int64, len(urls))
        self.columns.append((ids[good], lines[good], keys[good], hashes, (url_end - url_at)[good]))
        self.urls.extend(urls)

    def _take_uniform(self, block: Block) -> None:
        """A block of records with the same number of fields: column by column."""
        layout, stride, fields = self.layout, block.stride, block.fields
        assert fields is not None
        stamps = None
        if layout.updated_at is not None and layout.updated_at < block.width:
            stamps = block.column(layout.updated_at)
        self._take_columns(
            block.column(layout.creator_at),
            block.column(layout.url_at),
            stamps,
            np.arange(block.first, block.first + block.count, dtype=np.int64),
            lambda at: fields[at * stride : at * stride + stride - 1],
        )

    def _take_records(self, block: Block) -> None:
        """Records of varying length: the long enough ones column by column."""
        layout = self.layout
        records, lines = block.records(), list(block.line_numbers())
        wide = [at for at, record in enumerate(records) if len(record) >= layout.needed]
        rows = [records[at] for at in wide]
        stamps = None
        if layout.updated_at is not None:
            upd = layout.updated_at
            stamps = [record[upd] if upd < len(record) else "" for record in rows]
        self._take_columns(
            [record[layout.creator_at] for record in rows],
            [record[layout.url_at] for record in rows],
            stamps,
            np.array([lines[at] for at in wide], dtype=np.int64),
            rows.__getitem__,
        )
        for at in sorted(set(range(len(records))).difference(wide)):
            self._check(records[at], lines[at])  # too few fields (or blank): never a creator

    def _take_columns(
        self,
        creators: list[str],
        urls: list[str],
        stamps: list[str] | None,
        lines: np.ndarray,
        record: Callable[[int], list[str]],
    ) -> None:
        """Keep the rows that whole-column checks settle; give the others the full check."""
        count = len(creators)
        if not count:
            return
        ids = np.fromiter(map(self.by_field.get, creators, repeat(-1)), np.int64, count)
        fine = np.ones(count, dtype=bool) if _urls_fine(urls) else _each(_url_fine, urls)
        if stamps is None:
            keys = np.full(count, UNDATED, dtype=np.int64)
            parsed = np.ones(count, dtype=bool)
        else:
            keys, parsed = stamp_keys(stamps)
            if not parsed.all():  # parse_moment decides a plain text, below
                odd = np.flatnonzero(~parsed)
                fine[odd] &= _each(_plain, [stamps[at] for at in odd.tolist()])
        done, _ = self._resolve(
            ids, fine, keys, parsed, lines, creators.__getitem__,
            (stamps or []).__getitem__, record,
        )  # fmt: skip
        good = fine & ~done
        # Hashed while they are in the CPU cache, for the duplicate check in pass 2.
        encoded = list(map(str.encode, urls))
        hashes = np.fromiter(map(hash, encoded), np.int64, count)
        sizes = np.fromiter(map(len, encoded), np.int64, count)
        if good.all():
            self.columns.append((ids, lines, keys, hashes, sizes))
            self.urls.extend(encoded)
            return
        self.columns.append((ids[good], lines[good], keys[good], hashes[good], sizes[good]))
        self.urls.extend(compress(encoded, good.tolist()))

    def _resolve(
        self,
        ids: np.ndarray,
        fine: np.ndarray,
        keys: np.ndarray,
        parsed: np.ndarray,
        lines: np.ndarray,
        name_of: Callable[[int], str | None],
        stamp_of: Callable[[int], str],
        record_of: Callable[[int], list[str]],
    ) -> tuple[np.ndarray, tuple[list[int], list[int]]]:
        """Settle the rows whole-column checks left open, filling `ids` and `keys`.

        A name not known yet goes in CSV order (a creator's index is its rank of first
        appearance): known by its text, a new creator, or the full check decides (`name_of`
        gives None for a row with too few fields). A plain date numpy did not read goes to
        parse_moment. A row not `fine` takes the full check. Returns the rows the full check
        took, and the rows whose names were looked up with their creators (for a table).
        """
        done = np.zeros(len(ids), dtype=bool)
        learnt: tuple[list[int], list[int]] = ([], [])
        for at in np.flatnonzero(ids < 0).tolist():
            name, index = name_of(at), None
            if name is not None:
                index = self.by_field.get(name)
                if index is None and fine[at] and _plain_name(name):
                    index = self._creator(name, name)
                if index is not None:
                    learnt[0].append(at)
                    learnt[1].append(index)
            if index is None or not fine[at]:
                self._check(record_of(at), int(lines[at]))  # may make a creator
                done[at] = True
            else:
                ids[at] = index
        for at in np.flatnonzero(fine & ~parsed & ~done).tolist():
            keys[at] = self._stamp_key(stamp_of(at), int(ids[at]), int(lines[at]))
        for at in np.flatnonzero(~fine & ~done).tolist():
            self._check(record_of(at), int(lines[at]))  # a known creator: no new index
            done[at] = True
        return done, learnt

    def _stamp_key(self, stamp: str, index: int, line: int) -> int:
        """The key of a plain date that numpy did not parse (reported if bad)."""
        moment = parse_moment(stamp)
        if moment is None:
            self.report(bad_stamp_issue(line, stamp, self.names[index][:80]))
        return moment_key(moment)

    def _check(self, record: list[str], line: int) -> None:
        """The full check of one record."""
        if is_blank(record):
            return
        self.nonblank += 1
        row = check_record(record, line, self.layout, self.report)
        if row is None:
            return
        ids, lines, keys, urls = self.checked
        ids.append(self._creator(record[self.layout.creator_at], row.creator))
        lines.append(line)
        keys.append(moment_key(parse_moment(row.updated_at)))  # a bad date was reported
        urls.append(row.url.encode())

    def _end_block(self) -> None:
        """Merge the fully checked rows of a block into its other rows, in CSV order."""
        at, url_at = self.block_at
        if not self.checked[0] or at == len(self.columns):
            return  # none, or nothing to merge with: they follow the rows before
        checked, urls = self._checked_columns()
        columns = [*self.columns[at:], checked]
        urls = self.urls[url_at:] + urls
        del self.columns[at:], self.urls[url_at:]
        columns = [np.concatenate(column) for column in zip(*columns, strict=True)]
        order = np.argsort(columns[1], kind="stable")  # by line
        self.columns.append(tuple(column[order] for column in columns))
        self.urls.extend(map(urls.__getitem__, order.tolist()))

    def _settle(self) -> None:
        """The fully checked rows pending, as columns (they come after every other row)."""
        if self.checked[0]:
            columns, urls = self._checked_columns()
            self.columns.append(columns)
            self.urls.extend(urls)

    def _checked_columns(self) -> tuple[tuple[np.ndarray, ...], list[bytes]]:
        ids, lines, keys, urls = self.checked
        self.checked = ([], [], [], [])
        hashes = np.fromiter(map(hash, urls), np.int64, len(urls))
        sizes = np.fromiter(map(len, urls), np.int64, len(urls))
        return (np.array(ids), np.array(lines), np.array(keys), hashes, sizes), urls

    def _creator(self, raw_name: str, name: str) -> int:
        """The index of the creator `name`, made on its first row."""
        index = self.by_name.get(name)
        if index is None:
            index = self.by_name[name] = len(self.names)
            self.names.append(name)
        self.by_field[raw_name] = index
        return index

    def _flush(self, spill: _Spill) -> None:
        """Spill the pending rows, one record per partition (each in CSV order)."""
        self._settle()
        if not self.urls:
            return
        *columns, sizes = [np.concatenate(column) for column in zip(*self.columns, strict=True)]
        urls = self.urls
        self.columns, self.urls = [], []
        parts = columns[0] >> self.shift
        small = parts.astype(np.int16) if len(self.names) >> self.shift < 1 << 15 else parts
        order = np.argsort(small, kind="stable")  # radix sort for 16 bits
        columns = [column[order] for column in columns]
        columns[0] = columns[0].astype(np.int32)
        urls = list(map(urls.__getitem__, order.tolist()))
        counts = np.bincount(parts)
        ends = np.cumsum(counts).tolist()
        url_bytes = np.bincount(parts, weights=sizes + 29).astype(np.int64).tolist()  # + "\n"
        for part, count in enumerate(counts.tolist()):
            if count:
                start, end = ends[part] - count, ends[part]
                numbers = [column[start:end] for column in columns]
                spill.add(part, numbers, urls[start:end], url_bytes[part])


def _copy(text: str) -> str:
    return (text + "_")[:-1]


def _urls_fine(urls: list[str]) -> bool:
    """Would every URL pass check_url? (A false no sends the rows to a row-by-row test.)"""
    return not (
        "\n".join(urls).encode().translate(None, _URL_BYTES)  # non-ASCII, space, control
        or max(map(len, urls)) > MAX_URL_LENGTH
        or not all(map(_URL_START, urls))
    )


def _url_fine(url: str) -> bool:
    return len(url) <= MAX_URL_LENGTH and _URL_OK.fullmatch(url) is not None


def _plain(text: str) -> bool:
    """No surrounding whitespace, valid UTF-8: check_record would use the text as it is."""
    return text == text.strip() and "\ufffd" not in text


def _plain_name(name: str) -> bool:
    """Is the raw name its own normalised form, and a valid creator name?"""
    return (
        0 < len(name) <= MAX_CREATOR_NAME_LENGTH
        and _plain(name)
        and (name.isascii() or unicodedata.is_normalized("NFC", name))
    )


def _each(test: Callable[[str], bool], texts: list[str]) -> np.ndarray:
    return np.fromiter(map(test, texts), bool, len(texts))


def _raw_stamp_keys(
    rows: RawLines, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """stamp_keys of the texts [start, end) of a raw block (known to be printable ASCII)."""
    lengths = end - start
    keys = np.full(len(lengths), UNDATED, dtype=np.int64)
    parsed = lengths == 0
    for length in _SHAPES:
        where = np.flatnonzero(lengths == length)
        if where.size:
            chars = rows.gather(start[where], length)
            keys[where], parsed[where] = _parse_fixed(chars, length, False)
    return keys, parsed


def stamp_keys(stamps: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(keys, parsed): the date keys of the texts in the fixed forms numpy reads, and which.

    An empty text is undated. A text not parsed (other forms, invalid dates, whitespace) has
    key UNDATED and parsed False: parse_moment decides it.
    """
    count = len(stamps)
    keys = np.full(count, UNDATED, dtype=np.int64)
    parsed = np.zeros(count, dtype=bool)
    joined = "\n".join(stamps) + "\n"
    rows = None
    if not joined.isascii():  # other digits, or mojibake: keep them out of the byte view
        ascii_only = np.fromiter(map(str.isascii, stamps), bool, count)
        joined = "\n".join(compress(stamps, ascii_only.tolist())) + "\n"
        rows = np.flatnonzero(ascii_only)
    data = joined.encode()
    text = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(text == 10)
    lengths = np.diff(ends, prepend=-1) - 1
    if lengths.size and lengths.min() == lengths.max():  # one length: a plain reshape
        length = int(lengths[0])
        chars = text.reshape(-1, length + 1)[:, :length]
        # The usual case, every text of one form: one comparison of the whole column.
        shaped = length in _SHAPES and _one_form(data, length, len(lengths))
        groups = [(length, slice(None), chars, shaped)]
    else:
        starts = ends - lengths
        groups = []
        for length in (0, *_SHAPES):
            where = np.flatnonzero(lengths == length)
            if where.size:
                chars = text[starts[where, None] + np.arange(length)]
                groups.append((length, where, chars, False))
    for length, where, chars, shaped in groups:
        if length == 0:
            got, ok = UNDATED, True
        elif length in _SHAPES:
            got, ok = _parse_fixed(chars, length, shaped)
        else:
            continue
        target = where if rows is None else rows[where]
        keys[target] = got
        parsed[target] = ok
    return keys, parsed


def _one_form(data: bytes, length: int, count: int) -> bool:
    """Are all the newline-ended texts in `data` of one accepted form of this length?"""
    shape = data.translate(_DIGITS_AS_D)
    if not any(shape == line * count for line in _SHAPE_LINES[length]):
        return False
    return length != 25 or data.count(b"+00:00\n") == count  # its digits were taken as any


def _parse_fixed(chars: np.ndarray, length: int, shaped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ASCII codes of one length: (microseconds since 1970 UTC, valid).

    `shaped`: every row is known to be of an accepted form (digits where digits go).
    """
    if shaped:
        ok = np.ones(len(chars), dtype=bool)
    else:
        low, span = _SHAPES[length]
        ok = ~((chars - low) > span).any(axis=1)  # digits where digits go, the rest as shown
        if length > 10:
            ok &= (chars[:, 10] == ord("T")) | (chars[:, 10] == ord(" "))
    # Digit by digit, a position's codes contiguous (no BLAS: its threads spin on a busy
    # machine). A row of another form may give anything: `take` keeps it in the tables, and
    # ok is False.
    codes = np.ascontiguousarray(chars.T, dtype=np.int32) - 48

    def number(at: int, size: int) -> np.ndarray:
        value = codes[at]
        for digit in range(at + 1, at + size):
            value = value * 10 + codes[digit]
        return value

    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    hour, minute, second = (
        (number(11, 2), number(14, 2), number(17, 2)) if length > 10 else (0, 0, 0)
    )
    leap = _LEAP.take(year, mode="clip")
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= day <= _DAYS_IN_MONTH.take(month, mode="clip") + (leap & (month == 2))
    ok &= (hour < 24) & (minute < 60) & (second < 60)
    days = _YEAR_DAYS.take(year, mode="clip") + _DAYS_BEFORE_MONTH.take(month, mode="clip")
    days += (leap & (month > 2)) + day - 1
    seconds = days * 86400 + (hour * 3600 + minute * 60 + second)
    return np.where(ok, seconds * 1_000_000, UNDATED), ok


class _Spill:
    """Spilled rows by partition, gathered into records of about `record_bytes`: kept as they
    are up to a memory budget, then written to a temp file."""

    def __init__(self, directory: str | None, limits: SplitLimits) -> None:
        self.directory = directory
        self.memory_left = limits.spill_memory
        self.record_bytes = limits.record_bytes
        self.file: IO[bytes] | None = None
        self.size = 0
        # By partition: (size, (number columns..., urls)) in memory, or (offset, their sizes)
        # in the file.
        self.records: dict[int, list[tuple]] = {}
        self.pending: dict[int, list[tuple]] = {}  # pieces of a record, by partition
        self.pending_bytes: dict[int, int] = {}
        self.pending_total = 0

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def add(self, part: int, numbers: list[np.ndarray], urls: list[bytes], size: int) -> None:
        """Rows of a partition: their number columns and URLs, `size` bytes when stored."""
        pieces = self.pending.get(part)
        if pieces is None:
            pieces = self.pending[part] = []
        pieces.append((*numbers, urls))
        self.pending_total += size
        size += self.pending_bytes.get(part, 0)
        self.pending_bytes[part] = size
        if size >= self.record_bytes:
            self._store(part)
        elif self.pending_total > 256 * self.record_bytes:  # many partitions: bound the pieces
            for waiting in list(self.pending):
                self._store(waiting)

    def _store(self, part: int) -> None:
        """The pending pieces of a partition as one record."""
        columns = list(zip(*self.pending.pop(part), strict=True))
        size = self.pending_bytes.pop(part)
        self.pending_total -= size
        record = (
            *(b"".join(column) for column in columns[:-1]),  # raw arrays
            b"\n".join(chain.from_iterable(columns[-1])),
        )
        if size <= self.memory_left:
            self.memory_left -= size
            self.records.setdefault(part, []).append((size, record))
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="split-", dir=self.directory)  # noqa: SIM115
        self.file.seek(self.size)  # pass 2 stores while it reads: never where a read left it
        self.file.write(b"".join(record))
        self.records.setdefault(part, []).append((self.size, tuple(map(len, record))))
        self.size += sum(map(len, record))

    def read(self, part: int) -> tuple[list[np.ndarray], bytes]:
        """The rows of one partition, in CSV order: the number columns (creator indexes,
        lines, date keys, URL hashes) and the URLs newline-joined."""
        if part in self.pending:
            self._store(part)
        columns: list[list] = [[] for _ in _COLUMN_TYPES]
        urls = []
        for where, record in self.records.pop(part, ()):
            if isinstance(record[-1], int):  # the sizes of its columns: in the file
                assert self.file is not None
                self.file.seek(where)
                data = self.file.read(sum(record))
                cuts = np.cumsum((0, *record)).tolist()
                record = tuple(data[cuts[n] : cuts[n + 1]] for n in range(len(cuts) - 1))
            else:
                self.memory_left += where  # its size
            for column, data, dtype in zip(columns, record, _COLUMN_TYPES, strict=False):
                column.append(np.frombuffer(data, dtype=dtype))
            urls.append(record[-1])
        return [np.concatenate(column).astype(np.int64) for column in columns], b"\n".join(urls)


_COLUMN_TYPES = (np.int32, np.int64, np.int64, np.int64)  # creator index, line, date, URL hash
_MIX = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15: spreads creator indexes over hashes
_POWERS_OF_TEN = np.array([10**n for n in range(1, 19)], dtype=np.int64)


def _write_items(
    names: list[str],
    shift: int,
    spill: _Spill,
    out: IO[bytes],
    max_images: int,
    report: Callable[[RowIssue], None],
    summary: SplitSummary,
) -> None:
    """Pass 2: partition by partition, one item per creator, in first-appearance order.

    A partition's items are written by one join: its kept URLs in tile order, each after
    '","' or, at a creator's first, after the glue of what comes between (the item before's
    end, any item made apart, this item's head). A creator with a URL twice, or a partition
    with a URL that needs escapes, has its items made apart (_item_json).
    """
    per_partition = 1 << shift
    out.write(b"[")
    glue: list[bytes] = []  # what comes before the next URL written
    comma = b""  # before an item: none before the first
    for part, first in enumerate(range(0, len(names), per_partition)):
        part_names = names[first : first + per_partition]
        key_names = list(map(_key_name, part_names))
        summary.expected.extend(zip(part_names, key_names, strict=True))
        (ids, lines, keys, hashes), url_text = spill.read(part)
        urls = url_text.split(b"\n")
        local = ids - first
        counts = np.bincount(local, minlength=len(part_names))
        exact = _with_duplicates(local, hashes)
        order = _tile_order(local, lines, keys, len(part_names))
        # The first max_images rows of each creator, in tile order.
        kept = np.minimum(counts, max_images)
        rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        take = order[rank < max_images]
        take_lines = lines[take]
        line_list, line_lengths = _numbers_text(take_lines)
        line_cuts = _cuts(line_lengths, kept, 1)
        summary.rows += int(counts.sum())
        summary.covers += int(kept.sum())
        pieces = [b'","'] * (2 * len(take))
        pieces[1::2] = map(urls.__getitem__, take.tolist())
        # URLs without quotes or backslashes go into the JSON as they are.
        plain = b'"' not in url_text and b"\\" not in url_text
        ends = np.cumsum(kept).tolist()
        columns = (part_names, key_names, counts.tolist(), kept.tolist(), ends, line_cuts)
        for at, (name, key_name, count, keep, end, (line_a, line_b)) in enumerate(
            zip(*columns, strict=True)
        ):
            if plain and keep and at not in exact:
                glue.append(
                    b'%s{"creator":%s,"name":%s,"urls":["'
                    % (comma, _json_string(name).encode(), _json_string(key_name).encode())
                )
                pieces[2 * (end - keep)] = b"".join(glue)
                glue = [b'"],"lines":[%s],"cut":%d}' % (line_list[line_a:line_b], count - keep)]
            else:
                pieces[2 * (end - keep) : 2 * end] = repeat(b"", 2 * keep)  # made apart
                if at in exact:
                    rows = np.flatnonzero(local == at).tolist()
                    item_urls, item_lines, used = _tile_order_rows(
                        name, lines[rows].tolist(), list(map(urls.__getitem__, rows)),
                        keys[rows].tolist(), max_images, report,
                    )  # fmt: skip
                    cut = used - len(item_urls)
                    summary.rows += used - count
                    summary.covers += len(item_urls) - keep
                else:
                    item_lines = take_lines[end - keep : end].tolist()
                    item_urls = list(map(urls.__getitem__, take[end - keep : end].tolist()))
                    cut = count - keep
                texts = [url.decode() for url in item_urls]
                glue.append(comma + _item_json(name, key_name, texts, item_lines, cut).encode())
            comma = b",\n"
        out.write(b"".join(pieces))
    glue.append(b"]\n")
    out.write(b"".join(glue))
    summary.covers_cut = summary.rows - summary.covers
    summary.creators = len(names)


# Names that naming.safe_segment keeps as they are (a test holds the two together): runs of
# ASCII letters and digits joined by single underscores, MAX_SAFE_NAME at most.
_SAFE_AS_IS = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*").fullmatch


def _key_name(name: str) -> str:
    if len(name) <= MAX_SAFE_NAME and _SAFE_AS_IS(name):
        return name
    return safe_segment(name)


def _numbers_text(numbers: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ ",".join(map(str, numbers)) + "," (ASCII) for positive numbers, and each one's length
    + 1."""
    if not len(numbers):
        return b"", numbers
    digits = np.searchsorted(_POWERS_OF_TEN, numbers, "right") + 1
    ends = np.cumsum(digits + 1)
    text = np.full(int(ends[-1]), ord(","), dtype=np.uint8)
    place, rest = ends - 2, numbers  # each number's last digit, right to left
    for digit in range(int(digits.max())):
        if digit >= digits.min():
            live = digits > digit
            place, rest, digits = place[live], rest[live], digits[live]
        text[place] = 48 + rest % 10
        place, rest = place - 1, rest // 10
    return text.tobytes(), np.diff(ends, prepend=0)


def _cuts(lengths: np.ndarray, kept: np.ndarray, tail: int) -> list[tuple[int, int]]:
    """(start, end) in the joined text of each creator's run of kept items, whose lengths
    (separator included) are `lengths`; `tail` is the separator's length."""
    ends = np.concatenate(([0], np.cumsum(lengths)))
    last = np.cumsum(kept)
    return list(zip(ends[last - kept].tolist(), (ends[last] - tail).tolist(), strict=True))


def _with_duplicates(local: np.ndarray, hashes: np.ndarray) -> set[int]:
    """The creators (local indexes) that may have a URL twice: every one that has, and those
    whose URL hashes collide (they only cost time: they go row by row)."""
    mixed = hashes + local * _MIX
    ordered = np.sort(mixed)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return set(local[np.isin(mixed, twice)].tolist()) if twice.size else set()


def _tile_order(
    local: np.ndarray, lines: np.ndarray, keys: np.ndarray, creators: int
) -> np.ndarray:
    """The rows ordered by creator, newest first (undated last), then CSV order."""
    if len(lines) > 1 and (lines[1:] > lines[:-1]).all():  # in CSV order, as spilled
        dated = keys != UNDATED
        newest = int(keys.max())
        oldest = int(keys[dated].min()) if dated.any() else newest
        span = newest - oldest + 2  # ranks 0 (newest) .. span - 2 (oldest), span - 1 undated
        if span * creators < 1 << 62:  # creator * span + rank fits: one stable sort
            rank = np.where(dated, newest - keys, span - 1)
            return np.argsort(local * span + rank, kind="stable")
    return np.lexsort((lines, -keys, local))


def _item_json(name: str, key_name: str, urls: list[str], lines: list[int], cut: int) -> str:
    """json.dumps of the item (compact, ensure_ascii=False), without its per-element cost."""
    body = '","'.join(urls)
    if body.count('"') != 2 * len(urls) - 2 or "\\" in body or not urls:
        url_list = json.dumps(urls, ensure_ascii=False, separators=(",", ":"))
    else:  # valid URLs hold no control character: only quotes and backslashes need escapes
        url_list = f'["{body}"]'
    return (
        f'{{"creator":{_json_string(name)},"name":{_json_string(key_name)},"urls":{url_list},'
        f'"lines":[{",".join(map(str, lines))}],"cut":{cut}}}'
    )


def _tile_order_rows(
    name: str,
    lines: list[int],
    urls: list[str],
    keys: list[int],
    max_images: int,
    report: Callable[[RowIssue], None],
) -> tuple[list[str], list[int], int]:
    """(urls, lines) of one creator's first covers in tile order, and the rows used, with
    duplicate warnings: row by row, in CSV order."""
    seen: dict[str, int] = {}
    rows: list[tuple[int, int, str]] = []  # (-key, line, url): sorts newest first
    for line, url, key in sorted(zip(lines, urls, keys, strict=True)):
        first = seen.setdefault(url, line)
        if first != line:
            report(RowIssue(line, f"duplicate of line {first}; skipped", "warning", name))
            continue
        rows.append((-key, line, url))
    rows.sort()
    kept = rows[:max_images]
    return [url for _, _, url in kept], [line for _, line, _ in kept], len(rows)
