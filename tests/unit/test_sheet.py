"""The contact sheet's pages: escaping of hostile input, relative links, paging, order."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from collage import sheet
from collage.contracts import CreatorResult, RunReport
from collage.layout import RunLayout
from collage.sheet import ContactSheet

KEY = "s3-trigger/csv-files/c/collages/report_20250119T103000Z.html"
REPORT_KEY = KEY.removesuffix(".html") + ".json"
FOLDER = "s3-trigger/csv-files/c/collages/"
HOSTILE = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"


def record(creator: str, status: str = "ok", name: str | None = None, **extra) -> dict:
    name = name or creator
    ok = status != "failed"
    return {
        "creator": creator,
        "name": name,
        "status": status,
        "error": None if ok else "no cover could be rendered",
        "collages": [f"{FOLDER}{name}_20250119T103000Z.jpg"] if ok else [],
        "thumbnail": f"{FOLDER}thumbs/{name}_20250119T103000Z.jpg" if ok else None,
        "failures": [],
        **extra,
    }


REPORT = {
    "run_id": "covers-1234",
    "status": "completed_with_failures",
    "error": None,
    "source": "s3://in/csv-files/c.csv",
    "trigger": "s3",
    "timestamp": "20250119T103000Z",
    "finished_at": "2025-01-19T10:31:00+00:00",
    "config": {},
    "totals": {
        "creators": {"total": 3, "succeeded": 1, "partial": 1, "failed": 1},
        "covers": {"downloaded": 5, "failed": 1, "cut": 0, "bytes": 5000},
        "collages": 2,
        "rows": {"used": 7, "rejected": 1, "warnings": 0},
    },
    "row_issues": [
        {"line": 9, "severity": "error", "column": "cover_url", "value": HOSTILE, "message": "bad"}
    ],
    "row_issues_unlisted": 0,
}


def pages(records: list[dict], report: dict = REPORT) -> dict[str, str]:
    run = SimpleNamespace(output_prefix=FOLDER, timestamp="20250119T103000Z")
    with ContactSheet(RunLayout(run)) as contact:
        for each in records:
            contact.add(CreatorResult.model_validate(each))
        written = contact.pages(RunReport.model_validate(report))
        return {key: page.read().decode() for key, page in written}


class Text(HTMLParser):
    """The text a browser shows, and every tag it would build."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(page: str) -> Text:
    parser = Text()
    parser.feed(page)
    return parser


def test_hostile_names_urls_and_values_are_text_never_markup():
    failure = {"line": 3, "url": 'https://x/"><script>', "code": "http<b>", "error": HOSTILE}
    (page,) = pages(
        [
            record(HOSTILE, "partial", name="script-1a2b3c4d", failures=[failure]),
            record("line\nbreak\r\u202eevil", "failed", name="line_break-00000000"),
        ]
    ).values()
    assert "<script" not in page and "<img src=x" not in page and "http<b>" not in page
    tree = parsed(page)
    assert not any(tag == "script" or "onerror" in attrs for tag, attrs in tree.tags)
    assert not any(attrs.get("src") == "x" for _, attrs in tree.tags)
    shown = "".join(tree.text)
    assert HOSTILE in shown and 'https://x/"><script>' in shown and "http<b>" in shown
    assert "line\nbreak\r\u202eevil" in shown  # line breaks survive the one-line spool
    # Names sit in <bdi>: a right-to-left override cannot flip the text after them.
    assert page.count('<bdi class="creator">') == 4  # two problems, two collages
    # Scripts are refused outright, whatever else goes wrong.
    assert "script-src" not in page and "default-src 'none'" in page


def test_links_are_relative_to_the_report_and_percent_encoded():
    (page,) = pages([record("a b", name="a b#?%\u00e9")]).values()
    hrefs = [attrs for tag, attrs in parsed(page).tags if tag in ("a", "img")]
    assert {"href": "report_20250119T103000Z.json"} in hrefs
    assert {"href": "a%20b%23%3F%25%C3%A9_20250119T103000Z.jpg"} in hrefs
    (image,) = [attrs for tag, attrs in parsed(page).tags if tag == "img"]
    assert image["src"] == "thumbs/a%20b%23%3F%25%C3%A9_20250119T103000Z.jpg"
    assert image["alt"] == "a b"
    assert "://" not in "".join(a.get("href", "") + a.get("src", "") for a in hrefs)


def test_totals_and_rejected_rows_on_page_one():
    (page,) = pages([record("alice")]).values()
    totals = dict(re.findall(r'data-total="([^"]+)">([^<]*)<', page))
    assert totals == {
        "creators.total": "3",
        "creators.succeeded": "1",
        "creators.partial": "1",
        "creators.failed": "1",
        "covers.downloaded": "5",
        "covers.failed": "1",
        "covers.cut": "0",
        "covers.bytes": "5,000",
        "collages": "2",
        "rows.used": "7",
        "rows.rejected": "1",
        "rows.warnings": "0",
    }
    assert f"<code>{html.escape(HOSTILE)}</code>" in page and ">9</td>" in page


def test_problems_first_then_every_creator_in_pages(monkeypatch):
    monkeypatch.setattr(sheet, "PAGE_SIZE", 4)
    statuses = ["ok", "failed", "ok", "partial", "ok", "failed", "ok", "ok", "ok"]
    records = [record(f"c{n}", status) for n, status in enumerate(statuses)]
    written = pages(records)
    stem = KEY.removesuffix(".html")
    # 2 failed + 1 partial + 9 creators = 12 entries, 4 a page
    assert list(written) == [KEY, f"{stem}_p2.html", f"{stem}_p3.html"]
    order = [
        (kind, name)
        for page in written.values()
        for kind, name in re.findall(
            r'<li class="(problem|entry)"[^>]*>.*?<bdi class="creator">([^<]*)</bdi>', page
        )
    ]
    assert order == [
        ("problem", "c1"),
        ("problem", "c5"),
        ("problem", "c3"),
        *(("entry", f"c{n}") for n in range(9)),
    ]
    first, second, last = written.values()
    assert "Totals" in first and "Totals" not in second
    assert 'href="report_20250119T103000Z_p2.html" rel="next"' in first
    assert 'href="report_20250119T103000Z_p3.html" rel="last"' in first
    assert 'href="report_20250119T103000Z.html" rel="first"' in last
    assert 'rel="next"' not in last and "page 3 of 3" in last
    # A section split over two pages is opened and closed on each.
    for page in written.values():
        assert page.count("<ol") == page.count("</ol>") and page.count("<ul") == page.count("</ul>")


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_run_without_creators_still_has_its_page(status):
    report = {**REPORT, "status": status, "totals": {}, "row_issues": []}
    if status == "failed":
        report["error"] = {"stage": "split", "reason": "CsvFileError: <no header>"}
    (page,) = pages([], report).values()
    assert "page 1 of 1" in page and "<li" not in page
    if status == "failed":
        assert "split step: CsvFileError: &lt;no header&gt;" in page
