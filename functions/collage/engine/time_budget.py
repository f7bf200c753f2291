"""How long one cover's download may still take: its total timeout or the task's deadline."""

from __future__ import annotations

import time

from collage.engine.fetch_policy import DownloadError
from collage.engine.url_guard import scrub_url


class TimeBudget:
    """One URL's time: all its attempts share `limit`; the task's `deadline` may come first.
    Both are time.monotonic() values."""

    __slots__ = ("deadline", "limit")

    def __init__(self, limit: float, deadline: float | None = None) -> None:
        self.limit = limit
        self.deadline = deadline

    def left(self, url: str, what: str) -> tuple[float, str]:
        """Seconds left and the code to use when they run out; raises DownloadError if none."""
        now = time.monotonic()
        if self.deadline is not None and self.deadline <= self.limit:
            left, code = self.deadline - now, "deadline"
        else:
            left, code = self.limit - now, "timeout"
        if left <= 0:
            raise out_of_time(code, what, url)
        return left, code


def out_of_time(code: str, what: str, url: str) -> DownloadError:
    """The error for a URL whose time ran out: `code` is 'deadline' or 'timeout'."""
    limit = "task deadline" if code == "deadline" else "total timeout"
    return DownloadError(code, f"{limit} reached {what} {scrub_url(url)}")
