"""The run's progress on stderr: one redrawn line in a terminal, plain lines in a log.

In a terminal the line is rewritten in place. Anywhere else (CI logs, a pipe) each change of
step is printed on its own line, and count changes at most every `interval` seconds, so a
10,000-creator run does not print 10,000 lines.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Snapshot:
    """Where a run is: the step it is in and, during the map, its creators' counts."""

    state: str  # the step last entered, or a phrase such as "waiting for the execution"
    elapsed: float  # seconds since the execution started
    total: int | None = None  # creators of the map run, once it exists
    done: int = 0
    failed: int = 0
    pending: int = 0
    earlier: int = 0  # creators done by an earlier, interrupted run of the same command

    def line(self, width: int = 20) -> str:
        """`0:42 [####....] 12/40 creators · 11 done · 1 failed · 28 pending · RenderCollages`:
        what matters most first, so a narrow terminal cuts the step's name, not the counts."""
        clock = f"{int(self.elapsed) // 60}:{int(self.elapsed) % 60:02d}"
        if self.total is None:
            return f"{clock} {self.state}"
        finished = self.done + self.failed
        filled = width * finished // self.total if self.total else width
        bar = "#" * filled + "." * (width - filled)
        earlier = f" ({self.earlier} before the restart)" if self.earlier else ""
        return (
            f"{clock} [{bar}] {finished}/{self.total} creators · {self.done} done{earlier} · "
            f"{self.failed} failed · {self.pending} pending · {self.state}"
        )


class ProgressLine:
    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self.clock = clock
        self._last: Snapshot | None = None
        self._last_time = float("-inf")

    def show(self, snapshot: Snapshot) -> None:
        if self.tty:  # cut to the terminal's width: a wrapped line could not be redrawn
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[2K" + snapshot.line()[:width])
            self.stream.flush()
            self._last = snapshot
            return
        if not self._worth_a_line(snapshot):
            return
        self.stream.write(snapshot.line() + "\n")
        self.stream.flush()
        self._last, self._last_time = snapshot, self.clock()

    def _worth_a_line(self, snapshot: Snapshot) -> bool:
        last = self._last
        if last is None or last.state != snapshot.state or last.total != snapshot.total:
            return True
        counts = (snapshot.done, snapshot.failed, snapshot.pending)
        if counts == (last.done, last.failed, last.pending):
            return False
        return self.clock() - self._last_time >= self.interval

    def close(self, final: str) -> None:
        """End the display with a last line (the run's status), the last counts kept above it."""
        if self.tty and self._last is not None:
            self.stream.write("\n")
        self.stream.write(final + "\n")
        self.stream.flush()
