"""Database rows as the workflow's CSV rows: text cleaned, unusable rows skipped (and counted
by reason), updated_at spelled as ISO 8601."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from collage.csv_input import spreadsheet_safe

if TYPE_CHECKING:
    from collage_tools.dbexport import ExportStats

SKIP_NO_CREATOR = "NULL or blank creator"
SKIP_NO_URL = "NULL or blank URL"
SKIP_NOT_UTF8 = "bytes that are not UTF-8"
SKIP_LINE_BREAK = "a line break in a value"  # the workflow reads one row a line


def csv_record(
    row: sa.Row, positions: tuple[int, int, int], stats: ExportStats
) -> tuple[str, str, str] | None:
    """The row's (creator, URL, updated_at) for the CSV, or None when it is left out (each
    reason counted in `stats`); `positions` are the three columns' places in the row."""
    creator = _required(row[positions[0]], stats, SKIP_NO_CREATOR)
    if creator is None:
        return None
    url = _required(row[positions[1]], stats, SKIP_NO_URL)
    if url is None:
        return None
    updated = format_updated(row[positions[2]])
    if updated is None:
        stats.bad_updated += 1
        updated = ""
    return spreadsheet_safe(creator), url, updated  # the workflow reads the name back unmarked


def _required(value: object, stats: ExportStats, blank: str) -> str | None:
    """The value as text, or None when it is unusable or blank (counted; blank as `blank`)."""
    text = _text(value, stats)
    if text == "":
        stats.skipped[blank] += 1
        return None
    return text


def _text(value: object, stats: ExportStats) -> str | None:
    """The value as stripped text ('' for NULL), or None (counted) when it is bytes that are
    not UTF-8 or holds a line break."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = _decoded(bytes(value), stats)
        if value is None:
            return None
    text = "" if value is None else str(value).strip()
    if "\n" in text or "\r" in text:
        stats.skipped[SKIP_LINE_BREAK] += 1
        return None
    return text


def _decoded(data: bytes, stats: ExportStats) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.skipped[SKIP_NOT_UTF8] += 1
        return None


def format_updated(value: object) -> str | None:
    """updated_at as ISO 8601: '' for NULL, None for a value that is not a date or date-time.

    Date-times are written as stored (naive ones mean UTC to the workflow); text is re-spelled
    in ISO form; numbers are taken as Unix epoch seconds.
    """
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return _from_epoch(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _from_text(str(value).strip())


def _from_epoch(seconds: int | float | Decimal) -> str | None:
    try:
        return datetime.fromtimestamp(float(seconds), UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _from_text(text: str) -> str | None:
    """Text re-spelled in ISO form: a date stays a date, a date-time stays a date-time."""
    if not text:
        return ""
    if len(text) == 10:
        with suppress(ValueError):
            return date.fromisoformat(text).isoformat()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None  # includes MySQL's zero date '0000-00-00 00:00:00'
