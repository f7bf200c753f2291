"""The split benchmark runs end to end in its quick mode and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Whole benchmark runs in subprocesses (tens of seconds): a tier of their own, not unit tests.
pytestmark = [pytest.mark.bench, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "split_bench.py"


def test_quick_benchmark_prints_every_figure():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for pattern in (
        r"rows: 100,000 \(\d[\d,]* used, \d+ rejected, \d+ warnings\)",
        r"creators: \d[\d,]* \(\d[\d,]* items written\)",
        r"file size: \d+ MB",
        r"csv\.reader baseline: wall \d+\.\d\d s, cpu \d+\.\d\d s, peak RSS \d+ MB",
        r"split_csv: wall \d+\.\d\d s, cpu \d+\.\d\d s, peak RSS \d+ MB",
        r"time ratio split/baseline: \d+\.\d\d",
        r"largest item: \d[\d,]* bytes",
        r"target peak RSS <= 512 MB: (MET|NOT MET)",
        r"target time ratio <= 2\.0: (MET|NOT MET)",
        r"target largest item < 256 KiB: MET",
        r"split-bench: (all targets met|targets not met: .+)$",
    ):
        assert re.search(pattern, out, re.MULTILINE), (pattern, out)
    creators = re.search(r"creators: ([\d,]+) \(([\d,]+) items", out)
    assert creators and creators.group(1) == creators.group(2)  # one item per creator
    rejected = re.search(r"(\d+) rejected, (\d+) warnings", out)
    assert rejected and int(rejected.group(1)) > 0 and int(rejected.group(2)) > 0


def test_quick_many_creators_benchmark_measures_the_aggregate_step_too():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--covers-per-creator", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"creators: 50,000 \(50,000 items written\)", out), out
    aggregate = re.search(r"aggregate step: wall [\d.]+ s, peak RSS \d+ MB, (\{.*\})", out)
    assert aggregate and '"creators": 50000' in aggregate.group(1), out
    assert re.search(r"target aggregate peak RSS <= 512 MB: MET", out), out
