"""The export's errors, and the one-line messages they carry (never a password)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


class ExportError(Exception):
    """A failure with a one-line, password-free message; `exit_code` is 1 (runtime)."""

    exit_code = 1


class ExportConfigError(ExportError):
    """Wrong arguments, environment or URL syntax, found before contacting anything."""

    exit_code = 2


def db_message(error: sa.exc.DBAPIError) -> str:
    """The driver's own message, one line: 'Access denied ... (MySQL error 1045)'."""
    original = error.orig
    args: tuple[Any, ...] = getattr(original, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{first_line(args[1])} (error {args[0]})"
    return first_line(original) or type(original).__name__


def first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
