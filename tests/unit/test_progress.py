"""The progress display of `collage submit` / `watch`: a redrawn line in a terminal, few whole
lines in a log."""

from __future__ import annotations

import io

from collage_tools.progress import ProgressLine, Snapshot


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_snapshot_reads_as_a_bar_with_counts():
    line = Snapshot("RenderCollages", 83.0, total=40, done=9, failed=1, pending=30).line(width=20)
    assert line == (
        "1:23 [#####...............] 10/40 creators · 9 done · 1 failed · 30 pending"
        " · RenderCollages"
    )
    assert Snapshot("SplitByCreator", 4.9).line() == "0:04 SplitByCreator"
    assert Snapshot("Aggregate", 0, total=0).line(width=4).startswith("0:00 [####] 0/0 creators")


def test_in_a_log_steps_always_show_and_counts_at_most_every_interval():
    out, clock = io.StringIO(), Clock()
    progress = ProgressLine(out, interval=5.0, clock=clock)
    progress.show(Snapshot("SplitByCreator", 0))
    progress.show(Snapshot("SplitByCreator", 1))  # nothing new: no line
    progress.show(Snapshot("RenderCollages", 2, total=10, pending=10))  # a new step
    clock.now = 1.0
    progress.show(Snapshot("RenderCollages", 3, total=10, done=2, pending=8))  # too soon
    clock.now = 6.0
    progress.show(Snapshot("RenderCollages", 8, total=10, done=6, pending=4))
    progress.close("collage: SUCCEEDED")
    lines = out.getvalue().splitlines()
    assert [line.split(" · ")[0] for line in lines] == [
        "0:00 SplitByCreator",
        "0:02 [" + "." * 20 + "] 0/10 creators",
        "0:08 [" + "#" * 12 + "." * 8 + "] 6/10 creators",
        "collage: SUCCEEDED",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_in_a_terminal_one_line_is_redrawn_within_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = Terminal()
    progress = ProgressLine(out)
    progress.show(Snapshot("SplitByCreator", 0))
    progress.show(Snapshot("RenderCollages", 1, total=2, done=1, pending=1))
    progress.close("collage: SUCCEEDED")
    text = out.getvalue()
    assert text.count("\n") == 2 and text.endswith("RenderCollages\ncollage: SUCCEEDED\n")
    assert text.startswith("\r\x1b[2K0:00 SplitByCreator\r\x1b[2K0:01 [")
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal: cut, never wrapped
    narrow = Terminal()
    ProgressLine(narrow).show(Snapshot("RenderCollages", 1, total=2, done=1, pending=1))
    assert narrow.getvalue() == "\r\x1b[2K0:01 [##########..........] 1/2 creator"
