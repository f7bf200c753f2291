"""A generated section of a Markdown page: the text from a start marker through an end marker.

The scripts that write tables into the docs (permissions_table.py, build_sizes.py) replace
only that section, so the prose around a table stays the author's.
"""

from __future__ import annotations


def replaced(page: str, section: str, start: str, end: str, name: str = "the page") -> str:
    """`page` with its `start` ... `end` section replaced by `section` (which holds both markers).

    SystemExit naming `name` when the page has no such section.
    """
    if start not in page or end not in page:
        raise SystemExit(f"{name} has no {start!r} ... {end!r} section")
    before, rest = page.split(start, 1)
    return before + section + rest.split(end, 1)[1]
