"""Each fast path of split_csv against the plain function it stands for.

The differential tests (test_split_equivalence.py) run whole CSVs; these pin every shortcut
on its own, with the inputs most likely to make it diverge: each fails if its fast path ever
gives another answer than the slow one.
"""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest

from collage.csv_input import (
    FIELD_SIZE_LIMIT,
    _may_hold_long_line,
    check_url,
    parse_moment,
)
from collage.naming import MAX_SAFE_NAME, safe_segment
from collage.split import (
    UNDATED,
    SplitLimits,
    _key_name,
    _numbers_text,
    _Spill,
    _tile_order,
    _url_fine,
    _urls_fine,
    _with_duplicates,
    moment_key,
    split_csv,
    stamp_keys,
)


def stamp_texts() -> list[str]:
    texts = []
    for year in [0, 1, 4, 100, 400, 1900, 1969, 1970, 2000, 2023, 2024, 2100, 2400, 9996, 9999]:
        for month in range(14):
            for day in range(33):
                texts.append(f"{year:04d}-{month:02d}-{day:02d}")
    for hour, minute, second in [(0, 0, 0), (23, 59, 59), (24, 0, 0), (9, 60, 0), (9, 0, 60)]:
        for date in ["2024-02-29", "2023-02-29", "1970-01-01", "0001-01-01", "9999-12-31"]:
            moment = f"{date}T{hour:02d}:{minute:02d}:{second:02d}"
            spaced = moment.replace("T", " ")
            texts += [moment, moment + "Z", moment + "+00:00", spaced, spaced + "Z"]
            texts += [moment + "+01:00", moment + "-00:00", moment + "+00:01", moment + "z"]
            texts += [moment.replace("T", "t"), spaced + "+00:00", moment + ".5Z"]
    texts += [
        "", " ", "yesterday", "2025-1-24", "٢٠٢٥-٠١-٠١", "2025-01-24Z", "2025-01-24T09:53:11 Z",
        "2025-01-24\t09:53:11", "+025-01-24", "2025-01-2a", "20250124T095311Z", "2025/01/24",
        "2025-01-24T09:53:11+00;00", "~~~~~~~~~~", "\x7f" * 10, "9" * 25, "2025-01-24T09:53:11",
        "2025-01-24 09:53:11\ufffd", "2025-01-24T09:53:11+00:00 ",
    ]  # fmt: skip
    return texts


def assert_keys_as_parse_moment(texts: list[str]) -> np.ndarray:
    keys, parsed = stamp_keys(texts)
    for text, key, done in zip(texts, keys.tolist(), parsed.tolist(), strict=True):
        if done:  # numpy's answer must be parse_moment's, exactly
            assert key == moment_key(None if text == "" else parse_moment(text)), text
            assert text == "" or parse_moment(text) is not None, text
        else:
            assert key == UNDATED, text
    return parsed


def test_stamp_keys_are_parse_moments_answer_for_every_text_they_parse():
    texts = stamp_texts()
    parsed = assert_keys_as_parse_moment(texts)
    by_length: dict[int, list[str]] = {}
    for text in texts:
        by_length.setdefault(len(text), []).append(text)
    for group in by_length.values():  # one length: the whole-column path
        assert_keys_as_parse_moment(group)
    rnd = random.Random(4)
    for _ in range(300):
        assert_keys_as_parse_moment(rnd.choices(texts, k=rnd.randint(1, 40)))
        assert_keys_as_parse_moment(rnd.choices(by_length[rnd.choice([10, 19, 20, 25])], k=30))
    # The usual forms are all parsed by numpy (else the fast path would be a slow one).
    usual = [t for t in texts if parse_moment(t) and t.isascii() and len(t) in (10, 19, 20)]
    assert all(parsed[texts.index(text)] for text in usual if text[10:11] in ("", "T", " "))


def test_stamp_keys_of_a_uniform_column_with_one_odd_text():
    texts = ["2025-01-24T09:53:11Z"] * 50
    for odd in ["2025-01-24T09:53:11+00:00", "2025-02-30T09:53:11Z", "2025-01-24 09:53:11Z"]:
        column = [*texts[:20], odd, *texts[20:]]
        assert_keys_as_parse_moment(column)
    assert_keys_as_parse_moment(["2025-01-24T09:53:11+01:00"] * 5 + ["2025-01-24T09:53:11+00:00"])


def test_moment_keys_order_as_the_moments():
    moments = sorted(
        {parse_moment(t) for t in stamp_texts() if parse_moment(t) is not None},
    )
    keys = [moment_key(m) for m in moments]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert min(keys) > UNDATED


@pytest.mark.parametrize("seed", range(3))
def test_key_name_is_safe_segment(seed):
    rnd = random.Random(seed)
    names = ["abc", "a_b", "a__b", "_a", "a_", "A9_z0", "x" * MAX_SAFE_NAME, "x" * 101]
    names += ["a-0123abcd", "a.b", "a b", "é", "a/b", "", "1_2_3"]
    alphabet = "aZ09_-. /é"
    names += ["".join(rnd.choices(alphabet, k=rnd.randint(1, 12))) for _ in range(3000)]
    names += ["_".join(["ab"] * rnd.randint(1, 60)) for _ in range(50)]
    for name in names:
        assert _key_name(name) == safe_segment(name), name


def test_numbers_text_is_the_joined_decimal_texts():
    rnd = random.Random(2)
    for _ in range(500):
        numbers = [
            rnd.choice([1, 9, 10, 99, 100, 10 ** rnd.randint(0, 18), rnd.randint(1, 2**62)])
            for _ in range(rnd.randint(1, 30))
        ]
        text, lengths = _numbers_text(np.array(numbers, dtype=np.int64))
        assert text == (",".join(map(str, numbers)) + ",").encode()
        assert lengths.tolist() == [len(str(n)) + 1 for n in numbers]


def test_urls_said_fine_pass_check_url():
    urls = [
        "https://x.example/a.jpg", "http://a-b.example/", "https://x.example", "https://x/",
        "https://x.example:80/a", "https://u@x.example/a", "https://[::1]/a", "HTTPS://x.example/a",
        "https://x_y.example/a", "https://x.example/a b", "https://x.example/é", "ftp://x.example/",
        "https://x.example/\x7f", "https:///a", "https://x.example/" + "l" * 2040,
        "https://x.example/" + "l" * 2031, 'https://x.example/"q"', "https://x.example/\\",
    ]  # fmt: skip
    for url in urls:
        if _url_fine(url):
            assert check_url(url) is None, url
        assert _urls_fine([url]) == _url_fine(url), url
    fine = [url for url in urls if _url_fine(url)]
    assert _urls_fine(fine) and not _urls_fine([*fine, "https://x.example/a b"])


def test_duplicates_are_always_found():
    rnd = random.Random(3)
    for _ in range(200):
        count = rnd.randint(1, 60)
        local = np.array([rnd.randrange(5) for _ in range(count)], dtype=np.int64)
        urls = [f"https://x.example/{rnd.randrange(40)}" for _ in range(count)]
        pairs = list(zip(local.tolist(), urls, strict=True))
        twice = {creator for creator, url in pairs if pairs.count((creator, url)) > 1}
        hashes = np.array([hash(url) for url in urls], dtype=np.int64)
        assert twice <= _with_duplicates(local, hashes)
    # Equal hashes of different URLs only send their creators row by row.
    assert _with_duplicates(np.array([0, 0, 1]), np.array([7, 7, 7])) == {0}


def test_tile_order_is_the_plain_sort():
    rnd = random.Random(5)
    for _ in range(300):
        count = rnd.randint(1, 80)
        creators = rnd.randint(1, 6)
        local = np.array([rnd.randrange(creators) for _ in range(count)], dtype=np.int64)
        lines = np.arange(2, count + 2, dtype=np.int64)
        choices = [UNDATED, 0, 1, 5, -(10**17), 10**17, 1_700_000_000_000_000]
        keys = np.array([rnd.choice(choices) for _ in range(count)], dtype=np.int64)
        want = sorted(range(count), key=lambda at: (local[at], -keys[at], lines[at]))
        assert _tile_order(local, lines, keys, creators).tolist() == want
        shuffled = rnd.sample(range(count), count)  # not in CSV order: the lexsort
        got = _tile_order(local[shuffled], lines[shuffled], keys[shuffled], creators)
        assert [shuffled[at] for at in got.tolist()] == want


def test_long_lines_are_never_missed():
    rnd = random.Random(6)
    for _ in range(300):
        long_at = rnd.randrange(0, 3 * FIELD_SIZE_LIMIT)
        size = FIELD_SIZE_LIMIT + rnd.choice([1, 2, 1000])
        text = "a,b\n" * (long_at // 4) + "x" * size + "\n" + "c,d\n" * rnd.randrange(100)
        assert _may_hold_long_line(text)
    short = ("x" * 1000 + "\n") * 200  # no window of FIELD_SIZE_LIMIT / 2 without a newline
    assert not _may_hold_long_line(short)


def split(data: bytes, limits: SplitLimits) -> tuple[list, list]:
    out = io.BytesIO()
    summary = split_csv(io.BytesIO(data), out, 35, limits=limits)
    return json.loads(out.getvalue()), [issue.to_dict() for issue in summary.issues]


def test_new_creators_keep_their_order_whatever_check_settles_them():
    # In one block: a name that needs normalising, a plain new one, a plain one whose first row
    # is rejected, and one whose URL only the full check accepts.
    rows = [
        " bob ,https://x.example/1,2025-01-01",
        "carol,https://x.example/2,2025-01-01",
        "dave,nope,2025-01-01",
        "erin,HTTPS://x.example/3,2025-01-01",
        "dave,https://x.example/4,2025-01-01",
        "bob,https://x.example/5,yesterday",
        "carol,https://x.example/2,2025-01-02",
    ]
    data = ("creator_name,cover_url,updated_at\n" + "\n".join(rows) + "\n").encode()
    for limits in (SplitLimits(), SplitLimits(chunk_bytes=64, flush_rows=2, partition_creators=1)):
        items, issues = split(data, limits)
        assert [item["creator"] for item in items] == ["bob", "carol", "erin", "dave"]
        assert items[0]["lines"] == [2, 7]
        assert [(issue["line"], issue["severity"]) for issue in issues] == [
            (4, "error"),
            (7, "warning"),
            (8, "warning"),
        ]


def spill_rows(first: int, count: int) -> tuple[list[np.ndarray], list[bytes]]:
    lines = np.arange(first, first + count, dtype=np.int64)
    numbers = [np.zeros(count, dtype=np.int32), lines, lines * 10, lines * 100]
    return numbers, [b"https://x.example/%d.jpg" % line for line in lines.tolist()]


def test_the_spill_gives_back_what_it_took_when_pass_2_stores_while_reading(tmp_path):
    # Everything goes to the file; partition 1's last rows are still pending when pass 2
    # starts, and reading partition 0 leaves the file position before partition 1's record.
    spill = _Spill(str(tmp_path), SplitLimits(spill_memory=0, record_bytes=200))
    with spill:
        spill.add(0, *spill_rows(0, 6), 400)  # stored: a record of partition 0
        spill.add(1, *spill_rows(10, 6), 400)  # stored: a record of partition 1
        spill.add(1, *spill_rows(20, 2), 100)  # pending
        for part, lines in ((0, [*range(6)]), (1, [*range(10, 16), 20, 21])):
            (ids, got, keys, hashes), urls = spill.read(part)
            assert got.tolist() == lines and not ids.any()
            assert keys.tolist() == [line * 10 for line in lines]
            assert hashes.tolist() == [line * 100 for line in lines]
            assert urls.split(b"\n") == [b"https://x.example/%d.jpg" % line for line in lines]
