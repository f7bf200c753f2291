"""Split a CSV into one map item per creator, in tile order, cut to `max_images_per_creator`.

The items are one JSON array (the Distributed Map's ItemReader input), an item a line, in order
of the creators' first appearance. Apache Arrow does the work in two passes, in bounded memory:
1. collage.split_read checks the rows; they go to an Arrow dataset in /tmp, partitioned by
   creator.
2. Partition by partition (two at a time), Arrow drops repeated URLs, orders each creator's rows
   (newest `updated_at` first, undated last, ties in CSV order), cuts them and joins the items'
   JSON.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from collage import csv_input as rules
from collage.csv_input import CsvFileError, RowIssue
from collage.naming import safe_segment
from collage.split_read import ROWS, RowReader, ahead, line_chunks
from collage.text_encoding import ENCODING_SAMPLE, file_encoding, utf8_pieces

_BY_LINE = attrgetter("line")  # issues in line order
_COUNTS = ("rows", "rows_rejected", "row_warnings", "creators", "covers")  # SplitSummary's
# Step Functions' limit on a state's input or output (UTF-8 bytes): each map child's input.
PAYLOAD_LIMIT = 262_144


@dataclass(frozen=True)
class SplitLimits:
    """Memory knobs of split_csv (tests make them tiny to exercise every path)."""

    chunk_bytes: int = 4 << 20  # CSV bytes parsed at a time (cut after their last line)
    partition_creators: int = 1024  # creators ordered together in pass 2
    listed_issues: int = 10_000  # row issues kept in the summary (all are counted and reported)
    # A map item's JSON at most, in UTF-8 bytes: Step Functions hands a map child 262,144 bytes
    # at most, the run and settings beside the item included (split_task sets the exact room).
    item_bytes: int = PAYLOAD_LIMIT - 16 * 1024


@dataclass
class SplitSummary:
    rows: int = 0  # usable rows, repeats left out
    creators: int = 0
    covers: int = 0  # covers that will be rendered (after the per-creator cut)
    # The issues with the lowest line numbers, in line order, at most SplitLimits.listed_issues
    # (a CSV whose every row has a bad date would otherwise hold millions); on_issue sees all.
    issues: list[RowIssue] = field(default_factory=list)
    rows_rejected: int = 0  # issues of severity "error", listed or not
    row_warnings: int = 0

    @property
    def covers_cut(self) -> int:  # covers beyond max_images_per_creator
        return self.rows - self.covers

    @property
    def issues_unlisted(self) -> int:
        return self.rows_rejected + self.row_warnings - len(self.issues)

    def to_dict(self) -> dict:
        counts = {name: getattr(self, name) for name in _COUNTS}
        return counts | {"row_issues_unlisted": self.issues_unlisted, "covers_cut": self.covers_cut}

    def add_issue(self, issue: RowIssue, listed: int) -> None:
        if issue.severity == "error":
            self.rows_rejected += 1
        else:
            self.row_warnings += 1
        self.issues.append(issue)
        if len(self.issues) >= 2 * listed:  # trimmed now and then: amortised O(1) an issue
            self.trim_issues(listed)

    def trim_issues(self, listed: int) -> None:
        self.issues.sort(key=_BY_LINE)
        del self.issues[listed:]


def split_csv(
    raw: IO[bytes],
    out: IO[bytes],
    max_images: int,
    on_issue: Callable[[RowIssue], None] | None = None,
    *,
    creators_out: IO[bytes] | None = None,
    spill_dir: str | None = None,
    limits: SplitLimits = SplitLimits(),
) -> SplitSummary:
    """Read the CSV from `raw`, write the JSON array of creator items to `out`, and to
    `creators_out` a JSON line `[creator, key name]` for each item (the aggregator's list).

    `on_issue` sees each row issue as it is found; `summary.issues` lists the first
    `limits.listed_issues` of them in line order and counts them all. Raises CsvFileError when
    the file as a whole is unusable.
    """
    summary, listed = SplitSummary(), max(1, limits.listed_issues)

    def report(issue: RowIssue) -> None:
        summary.add_issue(issue, listed)
        if on_issue:
            on_issue(issue)

    head = raw.read(ENCODING_SAMPLE)
    if guessed := rules.encoding_issue(file_encoding(head)):
        report(guessed)
    per_part = limits.partition_creators
    reader = RowReader(line_chunks(utf8_pieces(raw, head), limits.chunk_bytes), report)
    with tempfile.TemporaryDirectory(prefix="split-", dir=spill_dir) as parts:
        ds.write_dataset(
            reader.batches(per_part), parts, schema=ROWS, format="arrow",
            partitioning=ds.partitioning(pa.schema([ROWS.field("part")])),
            max_partitions=1 << 20, max_rows_per_group=1 << 14,  # written as they come
        )  # fmt: skip
        if not reader.data_rows:
            raise CsvFileError("CSV file has a header but no data rows")
        names = reader.names

        def items(first: int) -> _Part:
            table = ds.dataset(f"{parts}/{first // per_part}", format="arrow").to_table()
            names_part = names[first : first + per_part].to_pylist()
            return _part(table, names_part, first, max_images, limits.item_bytes)

        out.write(b"[")
        for part in ahead(items, range(0, len(names), per_part)):
            for issue in part.repeats:
                report(issue)
            out.write(b",\n" if summary.creators else b"")
            out.write(_joined(part.items, ",\n"))
            if creators_out is not None:
                creators_out.write(_joined(part.creators, "\n"))
                creators_out.write(b"\n")
            summary.rows, summary.covers = summary.rows + part.rows, summary.covers + part.covers
            summary.creators += len(part.items)
        out.write(b"]\n")
    summary.trim_issues(listed)
    return summary


@dataclass
class _Part:
    """One partition's items (JSON, one a creator) and what the summary needs of them."""

    items: pa.Array
    creators: pa.Array  # `[creator, key name]` of each, as JSON
    rows: int  # usable rows, repeats left out
    covers: int
    repeats: list[RowIssue]  # and covers cut to bound the item's size, in line order


def _part(table: pa.Table, names: list[str], first: int, max_images: int, item_bytes: int) -> _Part:
    """Pass 2 for one partition (two run at once): dedupe, order, cut, JSON, bound."""
    table, repeats = _without_repeats(table, names, first)
    table = table.sort_by([("id", "ascending"), ("key", "descending"), ("line", "ascending")])
    urls = table["url"]
    if any(b'"' in chunk.buffers()[2].to_pybytes() for chunk in urls.chunks):  # rare: escape
        urls = pc.replace_substring(urls, '"', '\\"')  # (url_problem refuses `\\`, controls)
    ends = pc.run_end_encode(table["id"].combine_chunks()).run_ends.cast(pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), ends])  # one run a creator

    def kept(values: pa.ChunkedArray) -> pa.Array:  # each creator's first max_images values
        lists = pa.LargeListArray.from_arrays(offsets, values.combine_chunks())
        return pc.list_slice(lists, 0, max_images)

    kept_urls, kept_lines = kept(urls), kept(table["line"].cast(pa.string()))
    counts, shown = pc.subtract(ends, offsets[:-1]), pc.list_value_length(kept_urls)
    names_json, keys_json = _json(names), _json([safe_segment(name) for name in names])
    items = pc.binary_join_element_wise(
        '{"creator":', names_json, ',"name":', keys_json,
        ',"urls":["', pc.binary_join(kept_urls, '","'),
        '"],"lines":[', pc.binary_join(kept_lines, ","),
        '],"cut":', pc.subtract(counts, shown).cast(pa.string()), "}", "",
    )  # fmt: skip
    creators = pc.binary_join_element_wise("[", names_json, ",", keys_json, "]", "")
    items, oversize = _bounded(items, item_bytes)
    covers = pc.sum(shown).as_py() - len(oversize)
    issues = sorted([*repeats, *oversize], key=_BY_LINE) if oversize else repeats
    return _Part(items, creators, table.num_rows, covers, issues)


def _bounded(items: pa.Array, item_bytes: int) -> tuple[pa.Array, list[RowIssue]]:
    """The items, each at most `item_bytes`: one over it loses its last covers (in tile order,
    the oldest) until it fits, with a warning naming each cover's row. Rare (100 covers of
    2,048-character URLs fit; URLs full of `"`, which JSON doubles, may not), so done in
    Python, on the few items over the bound only."""
    if len(items) == 0 or pc.max(pc.binary_length(items)).as_py() <= item_bytes:
        return items, []
    texts, issues = items.to_pylist(), []
    for n, text in enumerate(texts):
        if len(text.encode()) > item_bytes:
            texts[n], dropped = _fitted(json.loads(text), item_bytes)
            issues += dropped
    return pa.array(texts, pa.string()), issues


def _fitted(item: dict, item_bytes: int) -> tuple[str, list[RowIssue]]:
    """The item's JSON cut to `item_bytes` from its last cover, and an issue per cover cut."""
    cut: list[tuple[int, str]] = []
    while len(text := _dumps(item).encode()) > item_bytes and len(item["urls"]) > 1:
        cut.append((item["lines"].pop(), item["urls"].pop()))
        item["cut"] += 1
    message = (
        f"cover not rendered: {len(cut)} of the creator's covers (the oldest) cut to keep its "
        f"map item within Step Functions' {PAYLOAD_LIMIT:,}-byte payload limit"
    )
    issues = [
        RowIssue(line, message, "warning", item["creator"], "cover_url", rules.quoted(url))
        for line, url in reversed(cut)
    ]
    return text.decode(), issues


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json(texts: list[str]) -> pa.Array:
    return pa.array([json.dumps(text, ensure_ascii=False) for text in texts], pa.string())


def _joined(texts: pa.Array, separator: str) -> pa.Buffer:
    """All of `texts` as one string, separated."""
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(texts)], pa.int64()), texts)
    return pc.binary_join(whole, separator)[0].as_buffer()


def _without_repeats(
    table: pa.Table, names: list[str], first: int
) -> tuple[pa.Table, list[RowIssue]]:
    """The rows but the repeats of a creator's URL, and a warning for each repeat."""
    firsts = table.group_by(["id", "url"], use_threads=False).aggregate([("line", "min")])
    if firsts.num_rows == table.num_rows:
        return table, []
    table = table.join(firsts, ["id", "url"])
    repeat = pc.not_equal(table["line"], table["line_min"])
    issues = [
        rules.duplicate_issue(row["line"], row["line_min"], names[row["id"] - first], row["url"])
        for row in table.filter(repeat).select(["id", "line", "line_min", "url"]).to_pylist()
    ]
    kept = table.filter(pc.invert(repeat)).drop_columns("line_min")
    return kept, sorted(issues, key=_BY_LINE)
