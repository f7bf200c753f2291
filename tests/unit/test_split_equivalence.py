"""split_csv against the plain reading (tests/support/reference_csv.py) on messy CSVs.

The reference reads one line at a time with csv_input's rules, groups in a dict, sorts with
tile_order_key and writes each item with json.dumps. The split must give byte-identical items,
the same summary and the same issues whatever its limits: tiny ones force every path (chunks
of a few lines, lines across reads, many partitions).
"""

from __future__ import annotations

import csv
import io
import json
import random

import pytest

from collage.csv_input import MAX_LINE_BYTES, CsvFileError
from collage.split import SplitLimits, split_csv
from tests.support.reference_csv import reference_split

NAMES = [
    "alice", "bob", "carol_99", "dave.k", " alice", "alice ", "\talice", "ALICE", "Zoë",
    "Zoe\u0308", "東京の猫 🐱", "مرحبا", "Smith, Jo", 'bob "the builder"', "multi\nline",
    "", "   ", "x" * 513, "y" * 512, "a/b", "a\\b", "../../evil", "\u00a0nbsp", "ctl\x01name",
    "tab\tinside", "new\u2028line", "nul\x00name", "=cmd()", "zw\u200bsp", "\u202eevil",
]  # fmt: skip
HOSTS = ["https://p16-sign-va.tiktokcdn.com", "http://cdn.example", "https://a.example:8443"]
ODD_URLS = [
    "", "nope", "ftp://x.example/a.jpg", "HTTPS://X.EXAMPLE/a.jpg", "https:///nohost.jpg",
    "https://x.example:99999/a.jpg", "https://x.example:abc/a.jpg", "https://[::1]/a.jpg",
    "https://[::1/a.jpg", "https://u@x.example/a.jpg", "https://x.example/a b.jpg",
    "https://x.example/a\tb.jpg", " https://x.example/pad.jpg ", "https://x.example/q\"uote.jpg",
    "https://x.example/back\\slash.jpg", "https://x.example/" + "l" * 2040,
    "https://x.example/" + "l" * 2030, "https://x.example?x=1", "https://x.example#f",
    "https://bücher.example/a.jpg", "https://x.example/ü.jpg", "https://x.example/del\x7f.jpg",
    "https://x.example/nul\x00.jpg", "https://x_y.example/a.jpg", "https://-.example/a.jpg",
    "https://x.example/a,b.jpg", "https://x.example/\u2028.jpg",
]  # fmt: skip
STAMPS = [
    "", "2025-01-24T09:53:11Z", "2025-01-24T09:53:11+00:00", "2025-01-24T09:53:11",
    "2025-01-24", "2025-01-24 09:53:11", " 2025-01-24 ", "2025-01-24T11:53:11+02:00",
    "2025-01-24T09:53:11.123456Z", "yesterday", "2025-02-30", "2025-01-24Z", "2025-01-24Z09:00",
    "0001-01-01T00:00:00", "9999-12-31", "2025-01-24\t09:53:11", "\t2025-01-25", "   ",
    "2025-W04-5", "2025-01-24T09:53:11 Z", "2025-01-24T09:53:11.5", "2025-01-24T23:59:60Z",
    "2025-01-24T09:53:11-23:59", "20250124", "2025-01-24T09:53", "9999-12-31T23:59:59-01:00",
]  # fmt: skip


def messy_csv(rnd: random.Random, rows: int) -> bytes:
    header = ["creator_name", "cover_url", "updated_at"]
    if rnd.random() < 0.3:
        header = rnd.sample([*header, "extra"], 4)
    elif rnd.random() < 0.15:
        header = ["Cover_URL", " creator_name "]  # no updated_at column, odd spelling
    newline = rnd.choice(["\n", "\n", "\r\n"])
    pool = rnd.sample(NAMES, rnd.randint(3, len(NAMES)))
    made: list[dict] = []
    for n in range(rows):
        if made and rnd.random() < 0.08:
            row = dict(rnd.choice(made))  # an exact duplicate, or the same URL another date
            if rnd.random() < 0.5:
                row["updated_at"] = rnd.choice(STAMPS)
        else:
            weird = rnd.random() < 0.15
            url = rnd.choice(ODD_URLS) if weird else f"{rnd.choice(HOSTS)}/obj/{n:05d}~t.jpeg?x=1"
            name = rnd.choice(pool) if rnd.random() < 0.3 else rnd.choice(pool[:3])
            stamp = rnd.choice(STAMPS) if rnd.random() < 0.3 else f"2025-01-{rnd.randint(1, 9):02d}"
            row = {"creator_name": name, "cover_url": url, "updated_at": stamp, "extra": "e,x"}
        made.append(row)
    return damaged(rnd, written(rnd, header, made, newline))


def written(rnd: random.Random, header: list[str], made: list[dict], newline: str) -> bytes:
    """The rows as a CSV writer spells them, with a few lines broken as people break them."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=newline, quoting=rnd.choice(QUOTING))
    writer.writerow(header)
    odd = ["", ",,", 'broken,"unclosed', 'a"b,"c"d,https://x.example/stray"quote.jpg']
    for row in made:
        fields = [row.get(column.strip().lower(), "") for column in header]
        roll = rnd.random()
        if roll < 0.02:
            fields = fields[:1]  # too few fields
        elif roll < 0.07:
            text.write(rnd.choice(odd) + newline)
        writer.writerow(fields)
    return text.getvalue().encode()


QUOTING = [csv.QUOTE_MINIMAL, csv.QUOTE_MINIMAL, csv.QUOTE_ALL]


def damaged(rnd: random.Random, data: bytes) -> bytes:
    """The file as the wild sends it: a BOM, invalid UTF-8, lone CRs, a huge line, UTF-16."""
    if rnd.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    if rnd.random() < 0.2:
        at = rnd.randrange(len(data))
        data = data[:at] + b"\xff\xfe" + data[at:]
    if rnd.random() < 0.1:
        data = data.replace(b"\n", b"\r", rnd.randint(1, 3))
    if rnd.random() < 0.05:
        data += b"late,https://x.example/" + b"f" * (MAX_LINE_BYTES + 10) + b",\n"
    if rnd.random() < 0.05:
        data = data.decode("utf-8", "replace").encode("utf-16")
    return data


TINY = SplitLimits(chunk_bytes=97, partition_creators=2)
LIMITS = [SplitLimits(), TINY, SplitLimits(chunk_bytes=4096, partition_creators=1)]


def run_split(data: bytes, max_images: int, limits: SplitLimits, tmp_path=None):
    out, creators = io.BytesIO(), io.BytesIO()
    spill_dir = str(tmp_path) if tmp_path else None
    summary = split_csv(
        io.BytesIO(data), out, max_images, creators_out=creators, limits=limits, spill_dir=spill_dir
    )
    expected = [tuple(json.loads(line)) for line in creators.getvalue().splitlines()]
    return out.getvalue(), summary.to_dict(), summary.issues, expected


@pytest.mark.parametrize("seed", range(80))
def test_messy_csv_gives_what_the_plain_reading_gives(seed, tmp_path):
    rnd = random.Random(seed)
    data = messy_csv(rnd, rnd.choice([5, 40, 300]))
    max_images = rnd.choice([1, 3, 35])
    try:
        want = reference_split(data, max_images)
    except CsvFileError as error:
        with pytest.raises(CsvFileError, match=str(error)[:20]):
            run_split(data, max_images, TINY, tmp_path)
        return
    for limits in LIMITS:
        got = run_split(data, max_images, limits, tmp_path)
        assert got[0] == want[0], limits
        assert got[1:] == want[1:], limits
    assert list(tmp_path.iterdir()) == []  # the spill folder is gone


def plain_csv(rnd: random.Random, rows: int, creators: int) -> bytes:
    """The common shape, in bulk: Arrow settles nearly every row."""
    lines = ["creator_name,cover_url,updated_at"]
    for n in range(rows):
        stamp = f"2025-01-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:00:{n % 60:02d}Z"
        if n % 97 == 0:
            stamp = ""
        url = f"https://p16-sign-va.tiktokcdn.com/obj/{rnd.getrandbits(64):016x}~tplv.jpeg"
        if n % 89 == 0 and n:
            lines.append(lines[-1])  # a duplicate
            continue
        name = f"user_{rnd.randrange(creators)}"
        lines.append(f"{name if n % 31 else 'Zoe' + chr(0x308) + name},{url},{stamp}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("limits", [*LIMITS, SplitLimits(chunk_bytes=2048, partition_creators=7)])
def test_bulk_csv_gives_what_the_plain_reading_gives(limits, tmp_path):
    data = plain_csv(random.Random(5), 3000, 150)
    want = reference_split(data, 10)
    assert run_split(data, 10, limits, tmp_path) == want
    assert want[1]["covers_cut"] > 0 and want[1]["row_warnings"] > 0


FORMS = [
    "2025-01-{d:02d}T{h:02d}:00:00Z", "2025-01-{d:02d}T{h:02d}:00:00+00:00",
    "2025-01-{d:02d}T{h:02d}:00:00", "2025-01-{d:02d} {h:02d}:00:00", "2025-01-{d:02d}",
    "2025-01-{d:02d}T{h:02d}:00:00+02:00", "2025-01-{d:02d}T{h:02d}:00:00.5Z", "",
    "2025-02-{d:02d}", "2025-01-{d:02d}T{h:02d}:60:00Z", "{d:04d}-01-01T{h:02d}:00:00-05:30",
]  # fmt: skip


@pytest.mark.parametrize("forms", [FORMS, FORMS[:1], FORMS[4:5], FORMS[8:9], FORMS[10:]])
def test_dates_in_every_form_give_what_the_plain_reading_gives(forms, tmp_path):
    rnd = random.Random(len(forms))
    lines = ["creator_name,cover_url,updated_at"]
    for _ in range(2500):
        stamp = rnd.choice(forms).format(d=rnd.randint(1, 31), h=rnd.randint(0, 23))
        url = f"https://p16-sign-va.tiktokcdn.com/obj/{rnd.randrange(200):04x}.jpeg"
        lines.append(f"user_{rnd.randrange(40)},{url},{stamp}")
    data = ("\n".join(lines) + "\n").encode()
    want = reference_split(data, 7)
    for limits in LIMITS:
        assert run_split(data, 7, limits, tmp_path) == want


def stamp_texts() -> list[str]:
    """Dates where Arrow's parser and datetime.fromisoformat could part ways."""
    texts = []
    for year in [1, 4, 100, 400, 1900, 1969, 1970, 2000, 2024, 2100, 9999]:
        for month in (0, 1, 2, 12, 13):
            texts += [f"{year:04d}-{month:02d}-{day:02d}" for day in (0, 1, 28, 29, 30, 31, 32)]
    for hour, minute, second in [(0, 0, 0), (23, 59, 59), (24, 0, 0), (9, 60, 0), (9, 0, 60)]:
        for date in ["2024-02-29", "2023-02-29", "1970-01-01", "0001-01-01", "9999-12-31"]:
            moment = f"{date}T{hour:02d}:{minute:02d}:{second:02d}"
            spaced = moment.replace("T", " ")
            texts += [moment, moment + "Z", moment + "+00:00", spaced, spaced + "Z"]
            texts += [moment + "+01:00", moment + "-00:00", moment + "+14:00", moment + "z"]
            texts += [moment.replace("T", "t"), moment + ".5Z", moment + ".1234567Z"]
    return [*texts, "2025-1-24", "٢٠٢٥-٠١-٠١", "20250124T095311Z", "2025/01/24", "9" * 25]


def test_every_date_spelling_is_settled_as_python_settles_it(tmp_path):
    """Arrow casts the ISO forms it settles exactly as fromisoformat does; the rest go to it."""
    texts = stamp_texts()
    rows = [f"c{n % 7},https://x.example/{n}.jpg,{text}" for n, text in enumerate(texts)]
    data = ("creator_name,cover_url,updated_at\n" + "\n".join(rows) + "\n").encode()
    want = reference_split(data, 1000)
    assert run_split(data, 1000, SplitLimits(chunk_bytes=1 << 12), tmp_path) == want
    assert 0 < want[1]["row_warnings"] < len(texts)


def test_every_name_and_url_spelling_is_settled_as_python_settles_it(tmp_path):
    rows = [[name, url] for name in NAMES for url in ODD_URLS]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([["creator_name", "cover_url"], *rows])
    data = text.getvalue().encode()
    want = reference_split(data, 1000)
    assert run_split(data, 1000, SplitLimits(chunk_bytes=1 << 12), tmp_path) == want
    assert want[1]["rows"] > 0 and want[1]["rows_rejected"] > 0


def test_a_wide_file_gives_what_the_plain_reading_gives(tmp_path):
    """20,000 columns: Arrow builds only the three it reads (all of them took 1.5 GB at 100k)."""
    extra = ",".join(f"x{n}" for n in range(20_000))
    rows = [
        f"c{n % 3},https://x.example/{n}.jpg,2025-01-0{1 + n % 9}," + "," * 19_999
        for n in range(60)
    ]
    rows[7] = rows[7].replace("https", "ftp")  # a row Python decides, from Arrow's fields
    rows[9] = rows[9][:-1]  # a field short: set aside by Arrow, read (and used) from its line
    data = ("creator_name,cover_url,updated_at," + extra + "\n" + "\n".join(rows) + "\n").encode()
    want = reference_split(data, 35)
    assert run_split(data, 35, SplitLimits(chunk_bytes=1 << 16), tmp_path) == want
    assert want[1]["rows"] == 59 and want[1]["rows_rejected"] == 1  # row 9 is still long enough
