"""The run's contact sheet: HTML pages beside the JSON report, to look at a run in a browser.

Page 1 (`report_TIMESTAMP.html`) has the run's totals and rejected rows; then, on as many pages
as needed (`report_TIMESTAMP_p2.html`, ...), the creators with problems (failed, then partial:
each failed cover with its URL and reason code), then every creator's page 1 as a thumbnail
linking to the full collage. Records are written to temporary files as the aggregate streams
them, and each page is built from those files on its own, so memory stays at one page however
many creators a run has.

Everything a user wrote (creator names, URLs, CSV values, reasons) is escaped with html.escape;
links are relative to the report's folder and percent-encoded, so the same files work from a
local folder, a download or a static website bucket. No scripts, fonts or anything remote: the
pages' Content-Security-Policy refuses scripts altogether (a second wall behind the escaping).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from html import escape
from typing import IO, Any
from urllib.parse import quote

from collage.contracts import CreatorResult, RunReport
from collage.layout import RunLayout

# Entries (problem listings and thumbnails) a page: ~1 MB of thumbnails. The aggregate function's
# COLLAGE_SHEET_PAGE_SIZE overrides it (the local stack's workers inherit it, as tests use).
PAGE_SIZE = int(os.environ.get("COLLAGE_SHEET_PAGE_SIZE") or 200)
ROW_ISSUES_SHOWN = 1000  # of the report's listed row issues, on page 1
SPOOL_BYTES = 1 << 20  # a page is built in memory up to this, on disk beyond

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
td.n{text-align:right}.failed{color:#a00}.partial{color:#a60}.ok{color:#070}
ol.problems>li{margin:.4em 0}ol.problems ul{margin:.2em 0}code{word-break:break-all}
ul.grid{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:10px}
ul.grid li{width:216px;font-size:12px;overflow-wrap:anywhere}
ul.grid img{display:block;background:#ddd}
.none{width:216px;height:274px;background:#eee;display:flex;align-items:center;
justify-content:center;color:#777}
nav{margin:1em 0}nav a,nav span{margin-right:1em}
"""
# file: so that the pages' images load when opened from a folder; no script source at all.
_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def text(value: Any) -> str:
    """Any value as HTML text: escaped, and bidi-isolated by the caller where it is a name."""
    return escape(str(value), quote=True)


def link(key: str, base: str) -> str:
    """The href of object `key` from a page in folder `base`: relative, percent-encoded."""
    folder = f"{base}/" if base else ""
    # Every key of a run is under the sheet's folder: a slice, not relpath (1M creators).
    relative = key[len(folder) :] if key.startswith(folder) else posixpath.relpath(key, base or ".")
    # quote leaves only letters, digits, "_.-~/" and %XX: nothing HTML would read as markup.
    return quote(relative, safe="/")


def one_line(fragment: str) -> bytes:
    """A fragment as one line of its spool file (names may hold line breaks: as references)."""
    return fragment.replace("\r", "&#13;").replace("\n", "&#10;").encode() + b"\n"


def problem_entry(result: CreatorResult) -> str:
    """A failed or partial creator: why, and each failed cover with its line, URL and code."""
    status = result.status
    covers = "".join(
        f"<li>line {text(failure.line)}: <code>{text(failure.url)}</code> "
        f"<b>{text(failure.code)}</b> {text(failure.error or '')}</li>"
        for failure in result.failures
    )
    reason = f" {text(result.error)}" if result.error else ""
    return (
        f'<li class="problem" data-status="{text(status)}"><bdi class="creator">'
        f'{text(result.creator)}</bdi> <span class="{text(status)}">{text(status)}'
        f"</span>{reason}" + (f"<ul>{covers}</ul>" if covers else "") + "</li>"
    )


def gallery_entry(result: CreatorResult, base: str) -> str:
    """A creator's page 1 as a thumbnail linking to the collage, its further pages as links."""
    collages = result.collages
    alt = text(result.creator)
    name = f'<bdi class="creator">{alt}</bdi>'
    if not collages:
        picture = '<div class="none">no collage</div>'
    elif result.thumbnail:
        picture = (
            f'<a href="{link(collages[0], base)}"><img src="{link(result.thumbnail, base)}" '
            f'alt="{alt}" width="216"></a>'
        )
    else:  # a record written before thumbnails existed
        picture = f'<a href="{link(collages[0], base)}">collage</a>'
    more = " ".join(
        f'<a href="{link(key, base)}">p{page}</a>' for page, key in enumerate(collages[1:], 2)
    )
    status = text(result.status)
    return (
        f'<li class="entry" data-status="{status}">{picture}{name} '
        f'<span class="{status}">{status}</span> {more}</li>'
    )


class ContactSheet:
    """Spools the sheet's entries as records arrive; `pages()` then yields the pages."""

    def __init__(self, keys: RunLayout) -> None:
        self.keys = keys
        self.base = posixpath.dirname(keys.report)
        self._spools = ExitStack()
        self._files = {
            part: self._spools.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed in __exit__)
            for part in ("failed", "partial", "all")  # the order the pages show them in
        }
        self.counts = dict.fromkeys(self._files, 0)

    def __enter__(self) -> ContactSheet:
        return self

    def __exit__(self, *exc: object) -> None:
        self._spools.close()

    def add(self, result: CreatorResult) -> None:
        if result.status != "ok":
            self._spool(result.status, problem_entry(result))
        self._spool("all", gallery_entry(result, self.base))

    def _spool(self, part: str, fragment: str) -> None:
        self._files[part].write(one_line(fragment))
        self.counts[part] += 1

    def page_count(self) -> int:
        return max(1, -(-sum(self.counts.values()) // PAGE_SIZE))

    def pages(self, report: RunReport) -> Iterator[tuple[str, IO[bytes]]]:
        """(key, page) for every page, page 1 first; each page is read before the next is made."""
        total = self.page_count()
        entries = self._entries()
        for number in range(1, total + 1):
            with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as page:
                page.write(self._head(report, number, total).encode())
                section = None
                for _ in range(PAGE_SIZE):
                    entry = next(entries, None)
                    if entry is None:
                        break
                    if entry[0] != section:
                        page.write(_close(section) + _open(entry[0], self.counts))
                        section = entry[0]
                    page.write(entry[1])
                page.write(_close(section) + self._nav(number, total).encode() + b"</body></html>")
                page.seek(0)
                yield self.keys.sheet_page(number), page

    def _entries(self) -> Iterator[tuple[str, bytes]]:
        for part, spool in self._files.items():
            spool.seek(0)
            for line in spool:
                yield part, line.rstrip(b"\n")

    def _head(self, report: RunReport, number: int, total: int) -> str:
        title = f"Run {text(report.run_id)}"
        head = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width">'
            f"<title>{title} - page {number} of {total}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{title}</h1>" + self._nav(number, total)
        )
        return head + (self._summary(report) if number == 1 else "")

    def _summary(self, report: RunReport) -> str:
        json_link = (
            f'<a href="{link(self.keys.report, self.base)}">'
            f"{text(posixpath.basename(self.keys.report))}</a>"
        )
        status = text(report.status)
        error = report.error
        why = f" ({text(error.stage)} step: {text(error.reason)})" if error else ""
        return (
            f'<p>Status: <b class="{status}" id="status">{status}</b>{why}'
            f" &middot; source <code>{text(report.source)}</code>"
            f" &middot; full report: {json_link}</p>"
            + totals_table(report.totals.model_dump())
            + row_issues_section(report)
        )

    def _nav(self, number: int, total: int) -> str:
        def to(page: int, label: str, rel: str) -> str:
            href = link(self.keys.sheet_page(page), self.base)
            return f'<a href="{href}" rel="{rel}" class="{rel}">{label}</a>'

        items = []
        if number > 1:
            items += [to(1, "&laquo; first", "first"), to(number - 1, "&lsaquo; previous", "prev")]
        items.append(f'<span class="at">page {number} of {total}</span>')
        if number < total:
            items += [to(number + 1, "next &rsaquo;", "next"), to(total, "last &raquo;", "last")]
        return f"<nav>{''.join(items)}</nav>"


_SECTIONS = {
    "failed": ("Failed creators", '<ol class="problems failed-list">'),
    "partial": ("Creators with failed covers", '<ol class="problems partial-list">'),
    "all": ("Collages", '<ul class="grid">'),
}


def _open(part: str, counts: Mapping[str, int]) -> bytes:
    heading, opening = _SECTIONS[part]
    return f"<h2>{heading} ({counts[part]:,})</h2>{opening}".encode()


def _close(part: str | None) -> bytes:
    if part is None:
        return b""
    return b"</ul>" if part == "all" else b"</ol>"


def totals_table(totals: Mapping[str, Any]) -> str:
    """Every number of the report's totals, each cell named by its path (`creators.failed`)."""
    rows = []
    for group, values in totals.items():
        cells = values.items() if isinstance(values, Mapping) else [("", values)]
        for name, value in cells:
            path = f"{group}.{name}" if name else group
            shown = f"{value:,}" if isinstance(value, int) else text(value)
            rows.append(
                f"<tr><th>{text(group)}</th><td>{text(name)}</td>"
                f'<td class="n" data-total="{text(path)}">{shown}</td></tr>'
            )
    return f'<h2>Totals</h2><table class="totals">{"".join(rows)}</table>'


def row_issues_section(report: RunReport) -> str:
    """The rejected (and warned) rows the report lists: line, column, value, reason."""
    issues = report.row_issues
    if not issues:
        return ""
    rows = "".join(
        f'<tr class="{text(issue.get("severity", ""))}"><td class="n">{text(issue.get("line"))}'
        f"</td><td>{text(issue.get('column', ''))}</td><td><code>{text(issue.get('value', ''))}"
        f"</code></td><td>{text(issue.get('message', ''))}</td>"
        f"<td>{text(issue.get('severity', ''))}</td></tr>"
        for issue in issues[:ROW_ISSUES_SHOWN]
    )
    unlisted = len(issues) - min(len(issues), ROW_ISSUES_SHOWN) + report.row_issues_unlisted
    more = f"<p>{unlisted:,} more in the full report.</p>" if unlisted else ""
    return (
        '<h2>Rows rejected or warned</h2><table class="row-issues"><tr><th>line</th>'
        f"<th>column</th><th>value</th><th>reason</th><th></th></tr>{rows}</table>{more}"
    )
