"""split_csv against the plain implementation it replaced, on messy generated CSVs.

The reference below is the straightforward version (csv.reader over a TextIOWrapper, every row
checked one by one, grouped in a dict, sorted with tile_order_key, json.dumps per item). The
fast split must give byte-identical items and the same summary and issues, whatever its
limits: tiny ones force every path (row-by-row blocks, reads across chunk boundaries, spills
to memory and to disk, many partitions).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import random
import unicodedata
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from collage.csv_input import FIELD_SIZE_LIMIT, CsvFileError, RowIssue, tile_order_key
from collage.naming import safe_segment
from collage.split import SplitLimits, split_csv

MAX_URL = 2048
MAX_NAME = 512


# --- the reference: the implementation before the rewrite, kept as simple as possible ---


def ref_timestamp(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def ref_check_url(url: str) -> str | None:
    if not url:
        return "missing cover_url"
    if len(url) > MAX_URL:
        return f"cover_url longer than {MAX_URL} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "cover_url contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError as error:
        return f"invalid cover_url: {error}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"cover_url scheme must be http or https, got {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "cover_url has no host"
    return None


def ref_rows(data: bytes, issues: list[RowIssue]):
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), "utf-8-sig", "replace", newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFileError("CSV file is empty") from None
    names = [unicodedata.normalize("NFC", h).strip().lower() for h in header]
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)
    if "creator_name" not in index or "cover_url" not in index:
        raise CsvFileError("missing columns")
    creator_at, url_at, stamp_at = (
        index["creator_name"],
        index["cover_url"],
        index.get("updated_at"),
    )
    needed = max(creator_at, url_at) + 1
    seen: dict[tuple[str, str], int] = {}
    data_rows = 0
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            previous_end = reader.line_num
            issues.append(RowIssue(start, f"malformed CSV record: {error}"))
            continue
        previous_end = reader.line_num
        if not record or all(not field.strip() for field in record):
            continue
        data_rows += 1
        if len(record) < needed:
            issues.append(
                RowIssue(start, f"expected at least {needed} fields, found {len(record)}")
            )
            continue
        creator = unicodedata.normalize("NFC", record[creator_at].strip())
        url = record[url_at].strip()
        stamp = record[stamp_at].strip() if stamp_at is not None and stamp_at < len(record) else ""
        shown = creator[:80]
        if any("\ufffd" in field for field in (creator, url, stamp)):
            issues.append(RowIssue(start, "row is not valid UTF-8", creator=shown))
            continue
        if not creator:
            issues.append(RowIssue(start, "missing creator_name"))
            continue
        if len(creator) > MAX_NAME:
            message = f"creator_name longer than {MAX_NAME} characters"
            issues.append(RowIssue(start, message, creator=shown))
            continue
        problem = ref_check_url(url)
        if problem:
            issues.append(RowIssue(start, problem, creator=shown))
            continue
        timestamp = ref_timestamp(stamp)
        if stamp and timestamp is None:
            message = f"updated_at {stamp[:40]!r} is not an ISO date; sorted last"
            issues.append(RowIssue(start, message, "warning", shown))
        first = seen.setdefault((creator, url), start)
        if first != start:
            message = f"duplicate of line {first}; skipped"
            issues.append(RowIssue(start, message, "warning", creator))
            continue
        yield start, creator, url, timestamp
    if data_rows == 0:
        raise CsvFileError("CSV file has a header but no data rows")


class _Row:
    def __init__(self, line: int, url: str, timestamp: float | None) -> None:
        self.line, self.url, self.timestamp = line, url, timestamp


def reference_split(data: bytes, max_images: int) -> tuple[bytes, dict, list, list]:
    issues: list[RowIssue] = []
    groups: dict[str, list[_Row]] = {}
    for line, creator, url, timestamp in ref_rows(data, issues):
        groups.setdefault(creator, []).append(_Row(line, url, timestamp))
    out = [b"["]
    totals = {"rows": 0, "covers": 0, "covers_cut": 0}
    expected = []
    for position, (creator, rows) in enumerate(groups.items()):
        ordered = sorted(rows, key=tile_order_key)  # type: ignore[arg-type]
        kept = ordered[:max_images]
        item = {
            "creator": creator,
            "name": safe_segment(creator),
            "urls": [row.url for row in kept],
            "lines": [row.line for row in kept],
            "cut": len(ordered) - len(kept),
        }
        totals["rows"] += len(rows)
        totals["covers"] += len(kept)
        totals["covers_cut"] += item["cut"]
        expected.append((creator, item["name"]))
        if position:
            out.append(b",\n")
        out.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    out.append(b"]\n")
    rejected = sum(1 for issue in issues if issue.severity == "error")
    summary = {
        "rows": totals["rows"],
        "rows_rejected": rejected,
        "row_warnings": len(issues) - rejected,
        "row_issues_unlisted": 0,
        "creators": len(groups),
        "covers": totals["covers"],
        "covers_cut": totals["covers_cut"],
    }
    return b"".join(out), summary, issues, expected


# --- messy CSVs ---

NAMES = [
    "alice", "bob", "carol_99", "dave.k", " alice", "alice ", "\talice", "ALICE", "Zoë",
    "Zoe\u0308", "東京の猫 🐱", "مرحبا", "Smith, Jo", 'bob "the builder"', "multi\nline",
    "", "   ", "x" * 513, "y" * 512, "a/b", "a\\b", "../../evil", "\u00a0nbsp", "ctl\x01name",
    "tab\tinside", "new\u2028line",
]  # fmt: skip
HOSTS = ["https://p16-sign-va.tiktokcdn.com", "http://cdn.example", "https://a.example:8443"]
ODD_URLS = [
    "", "nope", "ftp://x.example/a.jpg", "HTTPS://X.EXAMPLE/a.jpg", "https:///nohost.jpg",
    "https://x.example:99999/a.jpg", "https://x.example:abc/a.jpg", "https://[::1]/a.jpg",
    "https://[::1/a.jpg", "https://u@x.example/a.jpg", "https://x.example/a b.jpg",
    "https://x.example/a\tb.jpg", " https://x.example/pad.jpg ", "https://x.example/q\"uote.jpg",
    "https://x.example/back\\slash.jpg", "https://x.example/" + "l" * 2040,
    "https://x.example/" + "l" * 2031, "https://x.example?x=1", "https://x.example#f",
    "https://bücher.example/a.jpg", "https://x.example/ü.jpg", "https://x.example/del\x7f.jpg",
    "https://x.example/nul\x00.jpg", "https://x_y.example/a.jpg", "https://-.example/a.jpg",
]  # fmt: skip
STAMPS = [
    "", "2025-01-24T09:53:11Z", "2025-01-24T09:53:11+00:00", "2025-01-24T09:53:11",
    "2025-01-24", "2025-01-24 09:53:11", " 2025-01-24 ", "2025-01-24T11:53:11+02:00",
    "2025-01-24T09:53:11.123456Z", "yesterday", "2025-02-30", "2025-01-24Z", "2025-01-24Z09:00",
    "0001-01-01T00:00:00", "9999-12-31", "2025-01-24\t09:53:11", "\t2025-01-25", "   ",
    "2025-W04-5", "2025-01-24T09:53:11 Z",
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
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=newline)
    writer.writerow(header)
    for row in made:
        fields = [row.get(column.strip().lower(), "") for column in header]
        roll = rnd.random()
        if roll < 0.02:
            text.write(newline)  # blank line
        elif roll < 0.04:
            fields = fields[:1]  # too few fields
        elif roll < 0.05:
            text.write('broken,"unclosed' + newline)
        writer.writerow(fields)
    data = text.getvalue().encode()
    if rnd.random() < 0.1:
        data = b"\xef\xbb\xbf" + data  # BOM
    if rnd.random() < 0.2:
        at = rnd.randrange(len(data))
        data = data[:at] + b"\xff\xfe" + data[at:]  # invalid UTF-8 somewhere
    if rnd.random() < 0.1:
        data = data.replace(b"\n", b"\r", 1)  # a lone CR
    if rnd.random() < 0.05:
        data += b"late,https://x.example/" + b"f" * (FIELD_SIZE_LIMIT + 10) + b",\n"
    return data


TINY = SplitLimits(
    chunk_bytes=97, flush_rows=7, spill_memory=300, partition_creators=2, record_bytes=100
)
LIMITS = [SplitLimits(), TINY, SplitLimits(chunk_bytes=4096, flush_rows=50, spill_memory=0)]


def run_split(data: bytes, max_images: int, limits: SplitLimits, tmp_path=None):
    out = io.BytesIO()
    spill_dir = str(tmp_path) if tmp_path else None
    summary = split_csv(io.BytesIO(data), out, max_images, limits=limits, spill_dir=spill_dir)
    return out.getvalue(), summary.to_dict(), summary.issues, summary.expected


@pytest.mark.parametrize("seed", range(60))
def test_messy_csv_gives_what_the_plain_implementation_gave(seed, tmp_path):
    rnd = random.Random(seed)
    data = messy_csv(rnd, rnd.choice([5, 40, 300]))
    max_images = rnd.choice([1, 3, 35])
    try:
        want = reference_split(data, max_images)
    except CsvFileError:
        with pytest.raises(CsvFileError):
            run_split(data, max_images, TINY, tmp_path)
        return
    for limits in LIMITS:
        got = run_split(data, max_images, limits, tmp_path)
        assert got[0] == want[0], limits
        assert got[1] == want[1], limits
        assert got[2] == want[2], limits
        assert got[3] == want[3], limits
    assert list(tmp_path.iterdir()) == []  # the spill file is gone


@pytest.mark.parametrize("seed", range(40))
def test_quote_free_messy_csv_gives_what_the_plain_implementation_gave(seed, tmp_path):
    """Without quotes nearly every line takes the raw path (raw_lines) after the first chunk."""
    rnd = random.Random(1000 + seed)
    data = messy_csv(rnd, rnd.choice([40, 300]))
    data = b"\n".join(line for line in data.split(b"\n") if b'"' not in line)
    max_images = rnd.choice([1, 3, 35])
    try:
        want = reference_split(data, max_images)
    except CsvFileError:
        return
    for limits in LIMITS[1:]:
        assert run_split(data, max_images, limits, tmp_path) == want, limits


@pytest.mark.parametrize("seed", range(30))
def test_fully_quoted_messy_csv_gives_what_the_plain_implementation_gave(seed, tmp_path):
    """As exporters that quote every field write it: the raw path takes the wrapped fields."""
    rnd = random.Random(2000 + seed)
    data = messy_csv(rnd, rnd.choice([40, 300]))
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")))
    except csv.Error:
        return  # a broken quote: csv.reader cannot read it back, nor re-quote it
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    data = text.getvalue().encode("utf-8", "surrogateescape")
    max_images = rnd.choice([1, 3, 35])
    try:
        want = reference_split(data, max_images)
    except CsvFileError:
        return
    for limits in LIMITS:
        assert run_split(data, max_images, limits, tmp_path) == want, limits


def plain_csv(rnd: random.Random, rows: int, creators: int) -> bytes:
    """The common shape, in bulk: the fast paths take nearly every row."""
    lines = ["creator_name,cover_url,updated_at"]
    for n in range(rows):
        stamp = f"2025-01-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:00:{n % 60:02d}Z"
        if n % 97 == 0:
            stamp = ""
        url = f"https://p16-sign-va.tiktokcdn.com/obj/{rnd.getrandbits(64):016x}~tplv.jpeg"
        if n % 89 == 0 and n:
            lines.append(lines[-1])  # a duplicate
            continue
        lines.append(f"user_{rnd.randrange(creators)},{url},{stamp}")
    return ("\n".join(lines) + "\n").encode()


MANY_PARTS = SplitLimits(chunk_bytes=2048, flush_rows=64, partition_creators=1, record_bytes=40)


@pytest.mark.parametrize(
    "limits", [*LIMITS[1:], SplitLimits(chunk_bytes=2048, flush_rows=300), MANY_PARTS]
)
def test_bulk_csv_gives_what_the_plain_implementation_gave(limits, tmp_path):
    data = plain_csv(random.Random(5), 3000, 150)
    want = reference_split(data, 10)
    assert run_split(data, 10, limits, tmp_path) == want
    assert want[1]["covers_cut"] > 0 and want[1]["row_warnings"] > 0


def test_the_collector_is_left_as_it_was():
    data = plain_csv(random.Random(1), 50, 5)
    assert gc.isenabled()
    run_split(data, 35, SplitLimits())
    assert gc.isenabled()
    gc.disable()
    try:
        run_split(data, 35, SplitLimits())
        assert not gc.isenabled()
    finally:
        gc.enable()


FORMS = [
    "2025-01-{d:02d}T{h:02d}:00:00Z", "2025-01-{d:02d}T{h:02d}:00:00+00:00",
    "2025-01-{d:02d}T{h:02d}:00:00", "2025-01-{d:02d} {h:02d}:00:00", "2025-01-{d:02d}",
    "2025-01-{d:02d}T{h:02d}:00:00+02:00", "2025-01-{d:02d}T{h:02d}:00:00.5Z", "",
    "2025-02-{d:02d}", "2025-01-{d:02d}T{h:02d}:60:00Z",
]  # fmt: skip


def varied_csv(rnd: random.Random, rows: int, forms: list[str]) -> bytes:
    """Plain rows in bulk, with the dates in several forms and a few names to normalise."""
    lines = ["creator_name,cover_url,updated_at"]
    for n in range(rows):
        stamp = rnd.choice(forms).format(d=rnd.randint(1, 31), h=rnd.randint(0, 23))
        name = f"user_{rnd.randrange(40)}"
        if n % 37 == 0:
            name = rnd.choice([f" {name}", "Zoe\u0308", "Zoë", f"new_{n}"])
        url = f"https://p16-sign-va.tiktokcdn.com/obj/{rnd.randrange(200):04x}.jpeg"
        lines.append(f"{name},{url},{stamp}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("forms", [FORMS, FORMS[:1], FORMS[4:5], FORMS[1:3], FORMS[5:6]])
def test_dates_in_every_form_give_what_the_plain_implementation_gave(forms, tmp_path):
    data = varied_csv(random.Random(len(forms)), 2500, forms)
    want = reference_split(data, 7)
    for limits in LIMITS:
        assert run_split(data, 7, limits, tmp_path) == want


def test_many_partitions_at_once_give_what_the_plain_implementation_gave(tmp_path):
    # Pending pieces of 1,500 partitions outgrow their bound: all are stored early.
    data = plain_csv(random.Random(8), 4000, 1500)
    limits = SplitLimits(flush_rows=64, partition_creators=1, record_bytes=200)
    assert run_split(data, 10, limits, tmp_path) == reference_split(data, 10)
