"""The plain reading of a cover CSV: one line at a time, with collage.csv_input's rules.

It is what collage.split must give, byte for byte, however Arrow reads the file
(tests/unit/test_split_equivalence.py), and how the export tests read their CSVs back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

from collage.csv_input import (
    BLANK,
    MAX_LINE_BYTES,
    CoverRow,
    CsvFileError,
    RowIssue,
    check_line,
    duplicate_issue,
    encoding_issue,
    header_of,
    layout_of,
    parse_moment,
    quoted,
)
from collage.naming import safe_segment
from collage.text_encoding import ENCODING_SAMPLE, file_encoding

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lines_of(data: bytes) -> list[bytes]:
    """The file's physical lines as UTF-8 (a BOM dropped, other encodings transcoded)."""
    encoding = file_encoding(data[:ENCODING_SAMPLE])
    if encoding in ("utf-8", "utf-8-sig"):
        return data.removeprefix(b"\xef\xbb\xbf").splitlines()
    return data.decode(encoding, "replace").encode().splitlines()


def read_rows(raw: IO[bytes], on_issue: Callable[[RowIssue], None]) -> Iterator[CoverRow]:
    """Every usable row, repeats of a creator's URL left out; on_issue sees every problem."""
    data = raw.read()
    if guessed := encoding_issue(file_encoding(data[:ENCODING_SAMPLE])):
        on_issue(guessed)
    lines = lines_of(data)
    if not lines:
        raise CsvFileError("CSV file is empty")
    if len(lines[0]) > MAX_LINE_BYTES:
        raise CsvFileError(f"CSV header is longer than {MAX_LINE_BYTES:,} bytes")
    layout = layout_of(header_of(lines[0].decode("utf-8", "replace")))
    seen: dict[tuple[str, str], int] = {}
    data_rows = 0
    for number, text in enumerate(lines[1:], 2):
        if len(text) > MAX_LINE_BYTES:
            start = quoted(text[:800].decode("utf-8", "replace"))
            on_issue(RowIssue(number, f"line longer than {MAX_LINE_BYTES:,} bytes", value=start))
            data_rows += 1
            continue
        row = check_line(text.decode("utf-8", "replace"), number, layout, on_issue)
        data_rows += row is not BLANK
        if row is None or row is BLANK:
            continue
        first = seen.setdefault((row.creator, row.url), number)
        if first != number:
            on_issue(duplicate_issue(number, first, row.creator, row.url))
            continue
        yield row
    if not data_rows:
        raise CsvFileError("CSV file has a header but no data rows")


def tile_order_key(row: CoverRow) -> tuple[int, int, int]:
    """Newest `updated_at` first, rows without one last, ties in CSV order."""
    moment = parse_moment(row.updated_at)
    if moment is None:
        return (1, 0, row.line)
    return (0, (EPOCH - moment) // timedelta(microseconds=1), row.line)


def reference_split(data: bytes, max_images: int) -> tuple[bytes, dict, list[RowIssue], list]:
    """(items JSON, summary, issues in line order, expected pairs) as split_csv gives them."""
    issues: list[RowIssue] = []
    groups: dict[str, list[CoverRow]] = {}
    for row in read_rows(io.BytesIO(data), issues.append):
        groups.setdefault(row.creator, []).append(row)
    items, expected = [], []
    for creator, rows in groups.items():
        kept = sorted(rows, key=tile_order_key)[:max_images]
        item = {
            "creator": creator,
            "name": safe_segment(creator),
            "urls": [row.url for row in kept],
            "lines": [row.line for row in kept],
            "cut": len(rows) - len(kept),
        }
        items.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        expected.append((creator, item["name"]))
    rejected = sum(issue.severity == "error" for issue in issues)
    covers = sum(min(len(rows), max_images) for rows in groups.values())
    summary = {
        "rows": sum(map(len, groups.values())),
        "rows_rejected": rejected,
        "row_warnings": len(issues) - rejected,
        "row_issues_unlisted": 0,
        "creators": len(groups),
        "covers": covers,
        "covers_cut": sum(map(len, groups.values())) - covers,
    }
    issues.sort(key=lambda issue: issue.line)
    return ("[" + ",\n".join(items) + "]\n").encode(), summary, issues, expected
