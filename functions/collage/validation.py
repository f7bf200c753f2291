"""pydantic's validation errors as one line a person can act on: the field, the rule, the value."""

from __future__ import annotations

from typing import Any

from collage.engine.url_guard import scrub_text

MAX_SHOWN = 300  # characters of a message; a 1 MB field must not become a 1 MB log line


def describe(error: Any, limit: int = 3) -> str:
    """`rows: Input should be less than or equal to 20, got 25; ...` from a ValidationError."""
    parts = []
    for problem in error.errors(include_url=False)[:limit]:
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if not field:  # raised by the model itself, already naming the field and value
            parts.append(message)
            continue
        shown = scrub_text(repr(problem["input"]))  # a value may be a signed URL
        if len(shown) > 60:
            shown = shown[:59] + "…"
        parts.append(f"{field}: {message}, got {shown}")
    return "; ".join(parts)[:MAX_SHOWN]
