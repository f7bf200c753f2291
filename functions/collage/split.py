"""Split a CSV into one map item per creator, in tile order, cut to `max_images_per_creator`.

The items are written as one JSON array (the Distributed Map's ItemReader input); each item is
small (at most 100 URLs of at most 2 KiB), so every child's input stays far below the 256 KiB
payload limit however large the CSV is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from collage.csv_input import CoverRow, RowIssue, read_rows, tile_order_key
from collage.naming import safe_segment


@dataclass
class SplitSummary:
    rows: int = 0  # usable rows
    creators: int = 0
    covers: int = 0  # covers that will be rendered (after the per-creator cut)
    covers_cut: int = 0  # covers beyond max_images_per_creator
    issues: list[RowIssue] = field(default_factory=list)
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


def group_by_creator(rows: Iterable[CoverRow]) -> dict[str, list[CoverRow]]:
    """Creators in order of first appearance, each with its rows in CSV order."""
    groups: dict[str, list[CoverRow]] = {}
    for row in rows:
        groups.setdefault(row.creator, []).append(row)
    return groups


def creator_item(creator: str, rows: list[CoverRow], max_images: int) -> dict:
    """The map item of one creator: its covers in tile order, cut to `max_images`."""
    ordered = sorted(rows, key=tile_order_key)
    kept = ordered[:max_images]
    return {
        "creator": creator,
        "name": safe_segment(creator),
        "urls": [row.url for row in kept],
        "lines": [row.line for row in kept],
        "cut": len(ordered) - len(kept),
    }


def split_csv(
    raw: IO[bytes],
    out: IO[bytes],
    max_images: int,
    on_issue: Callable[[RowIssue], None] | None = None,
) -> SplitSummary:
    """Read the CSV from `raw`, write the JSON array of creator items to `out`.

    Raises csv_input.CsvFileError when the file as a whole is unusable.
    """
    summary = SplitSummary()

    def record(issue: RowIssue) -> None:
        summary.issues.append(issue)
        if on_issue:
            on_issue(issue)

    groups = group_by_creator(read_rows(raw, record))
    out.write(b"[")
    for position, (creator, rows) in enumerate(groups.items()):
        item = creator_item(creator, rows, max_images)
        summary.rows += len(rows)
        summary.covers += len(item["urls"])
        summary.covers_cut += item["cut"]
        summary.expected.append((creator, item["name"]))
        if position:
            out.write(b",\n")
        out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    out.write(b"]\n")
    summary.creators = len(groups)
    return summary
