"""raw_lines: fields located by numpy are csv.reader's; its URL, byte and name tests are exact
where they say yes."""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pytest

from collage.csv_input import check_url, read_blocks
from collage.raw_lines import MAX_NAME_WORDS, NameKeys, NameTable, RawLines
from collage.split import _url_fine

FIELDS = ["alice", "", " ", "é", "東京", "\x00", "\t", "a b", "x" * 70, "\x7f", "\xff"]
URLS = [
    "https://p16-sign-va.tiktokcdn.com/obj/a~c5_300x400.jpeg?x-expires=1&x-signature=a%2Fb",
    "https://x.example/", "https://x.example", "https://x.example?x=1/", "https://x.example#f/",
    "https://x.example:8443/a.jpg", "https://u@x.example/a.jpg", "https://[::1]/a.jpg",
    "https://x_y.example/a.jpg", "https:///a.jpg", "https://a/b", "http://x.example/a.jpg",
    "HTTPS://X.EXAMPLE/a.jpg", "https:/x.example/a.jpg", "https://x.example/a b.jpg",
    "https://x.example/\x7f.jpg", "https://x.example/ü.jpg", "https://bücher.example/a.jpg",
    "https://" + "h" * 31 + "/a.jpg", "https://" + "h" * 40 + "/a.jpg", "https://x.example/" +
    "l" * 2030, "https://x.example/" + "l" * 2029, "ftp://x.example/a.jpg", "https://x.ex\"/a",
]  # fmt: skip


def random_lines(rnd: random.Random, count: int) -> tuple[bytes, bool]:
    """Lines of random fields, some wrapped in quotes (as csv.writer would, or always), and
    whether every quote in them only wraps a whole field."""
    lines, simple = [], True
    for _ in range(count):
        fields = []
        for _ in range(rnd.choice([0, 1, 2, 3, 3, 3, 5])):
            field = rnd.choice(FIELDS + URLS + ["a, b", ","])
            simple &= '"' not in field
            if "," in field or rnd.random() < 0.3:
                field = f'"{field}"'
            fields.append(field)
        lines.append(",".join(fields))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    return data.replace(b"\xc3\xbf", b"\xff"), simple


def csv_fields(line: bytes) -> list[bytes]:
    """csv.reader's fields of one line, byte for byte (latin-1 maps bytes to characters)."""
    fields = next(csv.reader([line.decode("latin-1")]), [])
    return [field.encode("latin-1") for field in fields]


@pytest.mark.parametrize("seed", range(60))
def test_fields_are_csv_readers(seed):
    rnd = random.Random(seed)
    data, simple = random_lines(rnd, rnd.randint(1, 80))
    rows = RawLines(data)
    lines = data.split(b"\n")[:-1]
    assert rows.count == len(lines)
    for at, line in enumerate(lines):
        text = line.decode("utf-8", "replace")
        assert rows.line(at) == next(csv.reader([text]), [])
    assert rows.simple == simple
    if not simple:
        return  # the tokenizer gives these lines to csv.reader
    parsed = [csv_fields(line) for line in lines]
    assert rows.fields.tolist() == [max(1, len(fields)) for fields in parsed]
    for index in range(6):
        start, end = rows.field(index)
        odd = rows.odd_bytes(start, end)
        for at, fields in enumerate(parsed):
            if index < len(fields):
                assert rows.text(start, end, at) == fields[index]
                assert odd[at] == any(code < 33 or code > 126 for code in fields[index])


def test_plain_urls_pass_check_url_and_the_common_ones_are_plain():
    rnd = random.Random(3)
    urls = [url for url in URLS if '"' not in url] + [
        "https://" + "".join(rnd.choice("ab.-/:?#@[]_%x") for _ in range(rnd.randint(0, 40)))
        for _ in range(3000)
    ]
    data = "".join(f"n,{url},d\n" for url in urls).encode()
    rows = RawLines(data)
    assert rows.simple
    start, end = rows.field(1)
    plain = rows.plain_urls(start, end) & ~rows.odd_bytes(start, end)
    for at, url in enumerate(urls):
        if plain[at]:
            assert check_url(url) is None, url
            assert _url_fine(url), url
        elif url.startswith("https://") and len(url.split("/")[2]) < 32:
            assert not _url_fine(url), url  # the regex is asked only for http, long hosts
    assert plain[0] and plain[1] and plain[18] and plain[21]
    assert plain.sum() > 100  # the random ones include plain URLs


def names_block(names: list[bytes]) -> tuple[RawLines, NameKeys]:
    rows = RawLines(b"".join(name + b",u\n" for name in names))
    return rows, NameKeys(rows, *rows.field(0))


def test_the_table_finds_what_it_holds_and_nothing_else():
    rnd = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzé_東"
    names = list(
        {
            "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 80))).encode()
            for _ in range(6000)
        }
    )
    held = names[: len(names) // 2]
    table = NameTable()
    for first in range(0, len(held), 500):  # in blocks, as the split adds them
        batch = held[first : first + 500]
        _, keys = names_block(batch + batch[:9])  # a name twice in a block is added once
        table.add(keys, [*range(len(batch) + 9)], [*range(first, first + len(batch)), *range(9)])
    assert len(table.slots) >= 4 * table.size and len(table.slots) > 4096  # it grew
    _, keys = names_block(names)
    found = table.find(keys).tolist()
    for at, name in enumerate(names):
        fits = len(name) <= 8 * MAX_NAME_WORDS
        assert found[at] == (at if at < len(held) and fits else -1), name


def test_a_full_table_holds_no_more_and_still_finds_what_it_holds():
    names = [b"creator_%d" % n for n in range(100)]
    _, keys = names_block(names)
    table = NameTable(limit=30)
    table.add(keys, [*range(60)], [*range(60)])
    table.add(keys, [*range(60, 100)], [*range(60, 100)])
    found = table.find(keys).tolist()
    assert table.size == 30 and len(table.entries) == 30
    assert all(found[at] in (at, -1) for at in range(100)) and found.count(-1) == 70


def test_a_name_hashes_alike_in_any_block():
    _, short = names_block([b"ab", b"alice"])
    _, long = names_block([b"x" * 60, b"alice"])
    assert short.hashes[1] == long.hashes[1]


def test_a_shared_hash_never_gives_another_name():
    _, keys = names_block([b"alice", b"bob"])
    keys.hashes[1] = keys.hashes[0]  # as if the two collided
    table = NameTable()
    table.add(keys, [0], [5])
    table.add(keys, [1], [6])  # skipped: its hash is taken (the dict answers it)
    assert table.find(keys).tolist() == [5, -1]
    table = NameTable()
    table.add(keys, [1, 0], [6, 5])  # in one batch: the first is held
    assert table.find(keys).tolist() == [-1, 6]


def test_lines_come_raw_unless_their_quoting_needs_csv_reader():
    head = b"creator_name,cover_url,updated_at\n"
    plain = b'a,https://x.example/1.jpg,2025-01-01\r\n"b, c","u",\n' * 40
    body = plain + b'"multi\nline",u,\n' + plain + b"last,u"
    _, blocks = read_blocks(io.BytesIO(head + body), print, 256, raw_lines=True)
    blocks = list(blocks)
    raw = [block for block in blocks if block.raw is not None]
    assert sum(block.count for block in raw) > 120
    assert all(b"\r" not in block.raw.data for block in raw)
    assert all(np.all(block.raw.codes[block.raw.ends] == 10) for block in raw)
    assert any(block.raw.quoted for block in raw)  # "b, c" wraps a comma: still raw
    assert ["multi\nline", "u", ""] in [block.rows[0] for block in blocks if block.quoted]
