"""Split a CSV into one map item per creator, in tile order, cut to `max_images_per_creator`.

The items are written as one JSON array (the Distributed Map's ItemReader input); each item is
small (at most 100 URLs of at most 2 KiB), so every child's input stays far below the 256 KiB
payload limit however large the CSV is.

Built for a month's CSV (2M+ rows, random creator order) in bounded memory, in two passes:
1. stream the CSV (csv_input.read_blocks) and check the rows a block (~1,500 rows) at a time:
   a block whose every row is plainly fine, by whole-column string operations that run in C,
   is taken as is; other blocks go row by row (a quick test, else the full check). Creators get
   an index in order of first appearance; partition `index // partition_creators` keeps its
   rows as one flat list `[index, line, url, stamp, ...]`. Every `flush_rows` rows the lists
   are spilled by column (ints as arrays, texts newline-joined, marshalled): in memory up to
   `spill_memory` bytes, then to a temp file in `spill_dir`.
2. partition by partition: group the rows by creator, drop duplicates, sort in tile order
   (dates of one fixed format sort as text; others are parsed), cut, write the item. The
   partitions are in first-appearance order, so the items come out in it without a merge.
Memory: O(flush_rows + spill_memory + creators + one partition), whatever the number of rows;
the temp file holds the rest (about the size of the CSV). On CPython, cache misses dominate:
appending to a few long lists, columnar spills and whole-list operations avoid most of them.
`benchmarks/split_bench.py` measures it on 2,000,000 rows.
"""

from __future__ import annotations

import gc
import json
import marshal
import re
import tempfile
import unicodedata
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import attrgetter, methodcaller, rshift, sub
from typing import IO

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
from collage.naming import safe_segment

# A URL that is printable ASCII without spaces, at most MAX_URL_LENGTH long, and starts with
# http(s)://host/ (host: letters, digits, dots, dashes) always passes csv_input.check_url: the
# host is delimited by that '/', the rest cannot make urlsplit fail.
_URL_OK = re.compile(r"https?://[A-Za-z0-9.-]+/[!-~]*")
_URL_START = re.compile(r"https?://[A-Za-z0-9.-]+/").match
_URL_BYTES = bytes([10, *range(33, 127)])  # deleted by translate: a clean column leaves b""
_TEXT_BYTES = bytes([10, *range(32, 127)])  # the same, spaces allowed
_strip = methodcaller("strip")
_z_to_offset = methodcaller("replace", "Z", "+00:00")
_space_to_t = methodcaller("replace", " ", "T", 1)
_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses

# Dates in one fixed format, each a valid calendar date and time (what parse_moment accepts):
# for such a creator, sorting the texts sorts the moments, and no datetime need be made.
_DATE = (
    r"(?:(?!0000)[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)"
)
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
_STAMP_FORMATS = {  # (length, character after the date) -> all the texts, newline-ended
    (20, "T"): re.compile(rf"(?:{_DATE}T{_TIME}Z\n)+"),
    (25, "T"): re.compile(rf"(?:{_DATE}T{_TIME}\+00:00\n)+"),
    (19, "T"): re.compile(rf"(?:{_DATE}T{_TIME}\n)+"),  # naive means UTC
    (19, " "): re.compile(rf"(?:{_DATE} {_TIME}\n)+"),
    (10, ""): re.compile(rf"(?:{_DATE}\n)+"),
}
_from_iso = datetime.fromisoformat
_by_line = attrgetter("line")


@dataclass(frozen=True)
class SplitLimits:
    """Memory knobs of split_csv (tests make them tiny to exercise every path)."""

    chunk_bytes: int = 256 * 1024  # CSV bytes read and checked at a time
    flush_rows: int = 32_768  # rows held unspilled (spilled while still in the CPU cache)
    spill_memory: int = 256 << 20  # spilled bytes kept in memory before using the temp file
    partition_creators: int = 256  # creators sorted together in pass 2 (a power of two)


@dataclass
class SplitSummary:
    rows: int = 0  # usable rows
    creators: int = 0
    covers: int = 0  # covers that will be rendered (after the per-creator cut)
    covers_cut: int = 0  # covers beyond max_images_per_creator
    issues: list[RowIssue] = field(default_factory=list)  # in line order
    expected: list[tuple[str, str]] = field(default_factory=list)  # (creator, key name)

    @property
    def rows_rejected(self) -> int:
        return sum(1 for issue in self.issues if issue.severity == "error")

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rows_rejected": self.rows_rejected,
            "row_warnings": len(self.issues) - self.rows_rejected,
            "creators": self.creators,
            "covers": self.covers,
            "covers_cut": self.covers_cut,
        }


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
    as it is found (date and duplicate warnings come in the second pass); `summary.issues`
    lists them all in line order. Raises csv_input.CsvFileError when the file as a whole is
    unusable.
    """
    summary = SplitSummary()

    def report(issue: RowIssue) -> None:
        summary.issues.append(issue)
        if on_issue:
            on_issue(issue)

    # Millions of small live objects and no cycles: the cyclic collector would only rescan
    # them over and over (it doubled the run time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        layout, blocks = read_blocks(raw, report, limits.chunk_bytes)
        with _Spill(spill_dir, limits) as spill:
            shift = max(0, limits.partition_creators - 1).bit_length()  # a power of two
            creators = _Creators(layout, report, shift)
            creators.collect(blocks, spill, limits.flush_rows)
            if not creators.names and not creators.nonblank:
                raise CsvFileError("CSV file has a header but no data rows")
            _write_items(creators, spill, out, max_images, report, summary)
    finally:
        if collecting:
            gc.enable()
    summary.issues.sort(key=_by_line)
    return summary


class _Creators:
    """Pass 1: every row, kept by partition of creators (in order of first appearance).

    Each creator has an index (its rank of first appearance); partition `index >> shift` keeps
    the rows of its creators as one flat list `[index, line, url, stamp, ...]` in CSV order:
    appending to a few long lists misses the CPU cache far less than one list per creator.
    """

    def __init__(self, layout: CsvLayout, report: Callable[[RowIssue], None], shift: int) -> None:
        self.layout = layout
        self.report = report
        self.shift = shift
        self.names: list[str] = []  # normalised creator names, by index
        self.parts: list[list] = []  # unspilled rows by partition
        self.by_name: dict[str, int] = {}  # normalised name -> index
        self.by_field: dict[str, int] = {}  # raw creator_name field -> index
        self.nonblank = 0  # records that went through the full check and were not blank

    def collect(self, blocks: Iterator[Block], spill: _Spill, flush_rows: int) -> None:
        unspilled = compacted = 0
        for block in blocks:
            if block.quoted or block.width < self.layout.needed or not self._take_block(block):
                self._take_rows(block)
            unspilled += block.count
            if unspilled >= flush_rows:
                spill.write(self.parts)
                compacted += unspilled
                unspilled = 0
                if compacted >= 16 * flush_rows:
                    # Fresh copies of the keys sit together in memory: fewer cache misses.
                    self.by_field = {_copy(k): v for k, v in self.by_field.items()}
                    compacted = 0

    def _take_block(self, block: Block) -> bool:
        """Take a uniform block whole if every row is plainly fine (whole-column checks)."""
        layout = self.layout
        creators, urls = block.column(layout.creator_at), block.column(layout.url_at)
        if layout.updated_at is not None and layout.updated_at < block.width:
            stamps = block.column(layout.updated_at)
        else:
            stamps = [""] * block.count
        if not (_urls_fine(urls) and _names_fine(creators) and _stamps_fine(stamps)):
            return False
        ids = list(map(self.by_field.get, creators))
        if None in ids:  # a creator's first rows (each name is its normalised form)
            for at, known in enumerate(ids):
                if known is None:
                    name = creators[at]
                    known = self.by_field.get(name)
                    ids[at] = known if known is not None else self._creator(name, name)
        parts = map(self.parts.__getitem__, map(rshift, ids, repeat(self.shift)))
        rows = zip(ids, block.line_numbers(), urls, stamps, strict=True)
        deque(map(list.extend, parts, rows), 0)
        return True

    def _take_rows(self, block: Block) -> None:
        """Row by row: a quick test for the plain row, the full check for the others."""
        layout, by_field, parts, shift = self.layout, self.by_field, self.parts, self.shift
        creator_at, url_at, updated_at = layout.creator_at, layout.url_at, layout.updated_at
        needed, url_ok = layout.needed, _URL_OK.fullmatch
        quoted = block.quoted  # fields may hold newlines: always the full check
        for line, record in zip(block.line_numbers(), block.records(), strict=True):
            if not quoted and len(record) >= needed:
                url = record[url_at]
                stamp = ""
                if updated_at is not None and updated_at < len(record):
                    stamp = record[updated_at]
                index = by_field.get(record[creator_at])
                if (
                    index is not None
                    and len(url) <= MAX_URL_LENGTH
                    and url_ok(url)
                    and "\ufffd" not in stamp
                    and stamp == stamp.strip()
                ):
                    parts[index >> shift].extend((index, line, url, stamp))
                    continue
            self._check(record, line)

    def _check(self, record: list[str], line: int) -> None:
        """The full check of one record."""
        if is_blank(record):
            return
        self.nonblank += 1
        row = check_record(record, line, self.layout, self.report)
        if row is None:
            return
        index = self._creator(record[self.layout.creator_at], row.creator)
        # A valid date is kept in a canonical form (no whitespace), a bad one was reported.
        moment = parse_moment(row.updated_at)
        stamp = moment.isoformat() if moment else ""
        self.parts[index >> self.shift].extend((index, line, row.url, stamp))

    def _creator(self, raw_name: str, name: str) -> int:
        """The index of the creator `name`, made on its first row."""
        index = self.by_name.get(name)
        if index is None:
            index = self.by_name[name] = len(self.names)
            self.names.append(name)
            if index >> self.shift == len(self.parts):
                self.parts.append([])
        self.by_field[raw_name] = index
        return index


def _copy(text: str) -> str:
    return (text + "_")[:-1]


def _urls_fine(urls: list[str]) -> bool:
    """Would every URL pass check_url? (A false no sends the rows to the row-by-row path.)"""
    return not (
        "\n".join(urls).encode().translate(None, _URL_BYTES)  # non-ASCII, space, control
        or max(map(len, urls)) > MAX_URL_LENGTH
        or not all(map(_URL_START, urls))
    )


def _names_fine(names: list[str]) -> bool:
    """Is every name its own normalised form (no surrounding whitespace, NFC) and valid?"""
    joined = "\n".join(names)
    if joined.isascii():
        trimmed = _trimmed(joined)
    else:
        trimmed = "\ufffd" not in joined and _is_nfc(joined) and list(map(_strip, names)) == names
    return trimmed and min(map(len, names)) > 0 and max(map(len, names)) <= MAX_CREATOR_NAME_LENGTH


def _stamps_fine(stamps: list[str]) -> bool:
    """No surrounding whitespace and valid UTF-8 (the dates themselves are parsed in pass 2)."""
    joined = "\n".join(stamps)
    if joined.isascii():
        return _trimmed(joined)
    return "\ufffd" not in joined and list(map(_strip, stamps)) == stamps


def _trimmed(joined: str) -> bool:
    """ASCII items joined by newlines: none starts or ends with whitespace? (a control: no)"""
    return not (
        joined.encode().translate(None, _TEXT_BYTES)
        or " \n" in joined
        or "\n " in joined
        or joined.startswith(" ")
        or joined.endswith(" ")
    )


def _is_nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


class _Spill:
    """Spilled rows: marshalled blocks by partition, in memory up to a budget, then on disk."""

    def __init__(self, directory: str | None, limits: SplitLimits) -> None:
        self.directory = directory
        self.memory_left = limits.spill_memory
        self.file: IO[bytes] | None = None
        self.size = 0
        self.blocks: dict[int, list[bytes | tuple[int, int]]] = {}  # data or (offset, size)

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def write(self, parts: list[list]) -> None:
        """Move every pending row out (the lists are emptied, not replaced).

        Stored by column: two arrays of ints and two newline-joined texts (neither URLs nor
        kept dates hold a newline) marshal as four memory copies, not four objects a row.
        """
        for part, rows in enumerate(parts):
            if rows:
                ids, lines = array("q", rows[0::4]).tobytes(), array("q", rows[1::4]).tobytes()
                data = marshal.dumps((ids, lines, "\n".join(rows[2::4]), "\n".join(rows[3::4])))
                self.blocks.setdefault(part, []).append(self._store(data))
                rows.clear()

    def _store(self, data: bytes) -> bytes | tuple[int, int]:
        if len(data) <= self.memory_left:
            self.memory_left -= len(data)
            return data
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="split-", dir=self.directory)  # noqa: SIM115
        self.file.write(data)
        self.size += len(data)
        return (self.size - len(data), len(data))

    def read(self, part: int) -> Iterator[tuple[list[int], list[int], list[str], list[str]]]:
        """The spilled rows of one partition by column (ids, lines, urls, stamps), in order."""
        for stored in self.blocks.pop(part, ()):
            if isinstance(stored, tuple):
                assert self.file is not None
                self.file.seek(stored[0])
                stored = self.file.read(stored[1])
            else:
                self.memory_left += len(stored)
            ids, lines, urls, stamps = marshal.loads(stored)
            yield (
                array("q", ids).tolist(),
                array("q", lines).tolist(),
                urls.split("\n"),
                stamps.split("\n"),
            )


def _write_items(
    creators: _Creators,
    spill: _Spill,
    out: IO[bytes],
    max_images: int,
    report: Callable[[RowIssue], None],
    summary: SplitSummary,
) -> None:
    """Pass 2: partition by partition, one item per creator, in first-appearance order."""
    names, per_partition = creators.names, 1 << creators.shift
    creators.by_field.clear()  # not needed any more: free them before the sorting
    creators.by_name.clear()
    out.write(b"[")
    separator = ""
    for part, first in enumerate(range(0, len(names), per_partition)):
        part_names = names[first : first + per_partition]
        groups: list[list] = [[] for _ in part_names]
        pending = creators.parts[part]
        columns = (pending[0::4], pending[1::4], pending[2::4], pending[3::4])
        creators.parts[part] = []
        for ids, lines, urls, stamps in (*spill.read(part), columns):
            deque(map(hash, urls), 0)  # while they are in the cache: the dedupe set reuses it
            targets = map(groups.__getitem__, map(sub, ids, repeat(first)))
            deque(map(list.extend, targets, zip(lines, urls, stamps, strict=True)), 0)
        del pending, columns
        chunk: list[str] = []
        for name, rows in zip(part_names, groups, strict=True):
            urls, lines, used = _tile_order(name, rows, max_images, report)
            key_name = safe_segment(name)
            summary.rows += used
            summary.covers += len(urls)
            summary.covers_cut += used - len(urls)
            summary.expected.append((name, key_name))
            chunk.append(separator)
            chunk.append(_item_json(name, key_name, urls, lines, used - len(urls)))
            separator = ",\n"
        out.write("".join(chunk).encode())
    out.write(b"]\n")
    summary.creators = len(names)


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


def _tile_order(
    name: str, rows: list, max_images: int, report: Callable[[RowIssue], None]
) -> tuple[list[str], list[int], int]:
    """(urls, lines) of one creator's first `max_images` covers in tile order, and the rows used.

    `rows` is `[line, url, stamp, ...]` in CSV order. The common case (every date present and
    valid, no duplicates) runs as whole-list operations; any other goes row by row.
    """
    lines, urls, stamps = rows[0::3], rows[1::3], rows[2::3]
    if len(set(urls)) == len(urls):
        # Newest first; sorted() keeps equal keys in CSV order even when reversed.
        first = stamps[0]
        uniform = _STAMP_FORMATS.get((len(first), first[10:11]))
        if uniform and uniform.fullmatch("\n".join(stamps) + "\n"):
            order = sorted(range(len(urls)), key=stamps.__getitem__, reverse=True)
        else:
            texts = map(_z_to_offset, stamps)  # parse_moment's steps (the stamps are stripped)
            if " " in "".join(stamps):
                texts = map(_space_to_t, texts)
            try:
                moments = list(map(_from_iso, texts))
                order = sorted(range(len(urls)), key=moments.__getitem__, reverse=True)
            except (ValueError, TypeError):  # a missing or bad date; naive and aware dates
                order = None
        if order is not None:
            del order[max_images:]
            return (
                list(map(urls.__getitem__, order)),
                list(map(lines.__getitem__, order)),
                len(urls),
            )
    return _tile_order_rows(name, lines, urls, stamps, max_images, report)


def _tile_order_rows(
    name: str,
    lines: list[int],
    urls: list[str],
    stamps: list[str],
    max_images: int,
    report: Callable[[RowIssue], None],
) -> tuple[list[str], list[int], int]:
    """_tile_order row by row: date warnings, duplicate warnings, undated rows last."""
    seen: dict[str, int] = {}
    dated: list[tuple[datetime, int, str]] = []  # (moment, -line, url): sorts newest first
    undated: list[tuple[int, str]] = []
    for line, url, stamp in zip(lines, urls, stamps, strict=True):
        moment = parse_moment(stamp) if stamp else None
        if moment is None and stamp:
            report(bad_stamp_issue(line, stamp.strip(), name[:80]))
        first = seen.setdefault(url, line)
        if first != line:
            report(RowIssue(line, f"duplicate of line {first}; skipped", "warning", name))
            continue
        if moment is None:
            undated.append((line, url))
        else:
            dated.append((moment, -line, url))
    dated.sort(reverse=True)
    kept = dated[:max_images]
    out_urls = [url for _, _, url in kept]
    out_lines = [-line for _, line, _ in kept]
    for line, url in undated[: max(0, max_images - len(kept))]:
        out_urls.append(url)
        out_lines.append(line)
    return out_urls, out_lines, len(dated) + len(undated)
