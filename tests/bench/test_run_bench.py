"""The `collage run` benchmark runs to the end in --quick mode (20 creators) and prints every
figure. Its targets are for `make bench-run`; the 10,000 and 57,000 creator sizes never run
in CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A whole benchmark run in a subprocess (tens of seconds): a tier of its own, not a unit test.
pytestmark = [pytest.mark.bench, pytest.mark.slow]


def test_quick_run_benchmark_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/run_bench.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"collage run: [\d.]+ s, [\d.]+ creators/s, [\d.]+x the floor", out)
    assert re.search(r"peak RSS of collage run's process tree: \d+ MB", out)
    assert "where the time goes: start + split" in out
    # Every cover URL is distinct and is fetched once (issue #24's figure).
    assert "cover requests per distinct cover URL: 1.00 (100 URLs)" in out
