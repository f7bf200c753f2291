"""read_blocks gives csv.reader's records and line numbers, whatever the chunk boundaries."""

from __future__ import annotations

import csv
import io
import random

import pytest

from collage.csv_input import FIELD_SIZE_LIMIT, CsvFileError, read_blocks, read_rows

HEADER = "creator_name,cover_url,updated_at"
PIECES = [
    "alice", "https://x.example/a.jpg", "2025-01-01", "", " ", '"quoted, comma"',
    '"multi\nline"', '"cr\r\nlf"', '"say ""hi"""', 'in"side', '"unclosed', "\x00", "é", "東京",
    "a\rb", "\t", '""', '"a"b', "x" * 100,
]  # fmt: skip
ENDINGS = ["\n", "\n", "\n", "\r\n", "\r", ""]


def random_text(rnd: random.Random) -> str:
    lines = [HEADER]
    for _ in range(rnd.randint(0, 60)):
        if rnd.random() < 0.05:
            lines.append("")
            continue
        fields = [rnd.choice(PIECES) for _ in range(rnd.choice([1, 2, 3, 3, 3, 4]))]
        lines.append(",".join(fields))
    if rnd.random() < 0.05:
        lines.append("big," + "f" * (FIELD_SIZE_LIMIT + rnd.randint(-2, 2)) + ",x")
    ending = rnd.choice(ENDINGS[:4])
    text = "".join(line + (rnd.choice(ENDINGS) if rnd.random() < 0.1 else ending) for line in lines)
    return text[: rnd.randint(len(text) - 3, len(text))] if rnd.random() < 0.2 else text


def reference(data: bytes) -> list[tuple]:
    """(line, record) or (line, error) as the csv module gives them, after the header."""
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), "utf-8-sig", "replace", newline=""))
    next(reader)
    got: list[tuple] = []
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            return got
        except csv.Error as error:
            got.append((start, f"malformed CSV record: {error}"))
        else:
            got.append((start, record))
        previous_end = reader.line_num


def tokenized(data: bytes, chunk_bytes: int, raw_lines: bool = False) -> list[tuple]:
    issues: list = []
    _, blocks = read_blocks(io.BytesIO(data), issues.append, chunk_bytes, raw_lines=raw_lines)
    got = [
        (line, record)
        for block in blocks
        for line, record in zip(block.line_numbers(), block.records(), strict=True)
    ]
    got += [(issue.line, issue.message) for issue in issues]
    return sorted(got, key=lambda entry: entry[0])


@pytest.mark.parametrize("seed", range(300))
def test_records_and_line_numbers_are_the_csv_modules(seed):
    rnd = random.Random(seed)
    data = random_text(rnd).encode()
    if rnd.random() < 0.2:
        data = b"\xef\xbb\xbf" + data
    if rnd.random() < 0.2:  # invalid UTF-8 after the header
        at = rnd.randint(data.index(b"updated_at") + 11, len(data))
        data = data[:at] + rnd.choice([b"\xff", b"\xe6\x9d", b"\xc3"]) + data[at:]
    want = reference(data)
    for chunk_bytes in (1, 7, 64, 1000, 1 << 20):
        assert tokenized(data, chunk_bytes) == want, chunk_bytes
        assert tokenized(data, chunk_bytes, raw_lines=True) == want, chunk_bytes


def test_uniform_quote_free_lines_come_as_columns():
    data = (
        HEADER + "\na,https://x.example/1.jpg,2025-01-01\nb,https://x.example/2.jpg,\n"
    ).encode()
    _, blocks = read_blocks(io.BytesIO(data), print)
    (block,) = list(blocks)
    assert (block.width, block.first, block.count) == (3, 2, 2)
    assert block.column(0) == ["a", "b"] and block.column(2) == ["2025-01-01", ""]


def test_a_quoted_record_spanning_chunks_keeps_its_line_numbers():
    body = 'a,"https://x.example/1.jpg",2025-01-01\n"multi\n\n\nline",u,\nc,u,\n'
    data = (HEADER + "\n" + body).encode()
    want = [
        (2, ["a", "https://x.example/1.jpg", "2025-01-01"]),
        (3, ["multi\n\n\nline", "u", ""]),
        (7, ["c", "u", ""]),
    ]
    for chunk_bytes in (1, 5, 40, 4096):
        assert tokenized(data, chunk_bytes) == want


def test_header_problems_are_file_errors():
    with pytest.raises(CsvFileError, match="empty"):
        read_blocks(io.BytesIO(b""), print)
    with pytest.raises(CsvFileError, match="missing cover_url"):
        read_blocks(io.BytesIO(b"creator_name\nx\n"), print)


def test_read_rows_gives_the_same_rows_for_any_chunking():
    text = HEADER + "\n" + "".join(f"c{n % 7},https://x.example/{n}.jpg,\n" for n in range(500))
    rows = list(read_rows(io.BytesIO(text.encode()), print))
    assert [(r.line, r.creator) for r in rows][:2] == [(2, "c0"), (3, "c1")] and len(rows) == 500
