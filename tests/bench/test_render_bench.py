"""The render benchmark runs to the end in --quick mode and prints every figure.

Timing targets are not asserted here (they are read from the printed MET / NOT MET lines);
this checks that each measurement happened and that the contact sheets were written.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# Whole benchmark runs in subprocesses (tens of seconds): a tier of their own, not unit tests.
pytestmark = [pytest.mark.bench, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
METHODS = (
    "engine (collage render)",
    "naive Pillow",
    "ImageMagick montage",
    "pyvips",
    "floor",
    "collage task's render",
    "collage task + thumbnail",
)
ROW = r"\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$"


def test_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/render_bench.py", "--quick", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    for size in ("1080x1920", "720x1280"):
        assert f"covers {size}:" in out
    for method in METHODS:
        rows = re.findall(rf"^  {re.escape(method)}[^\n]*?{ROW}", out, re.MULTILINE)
        skipped = f"skipped {method}" in out
        # Each method has a row per cover size (wall, cpu, peak MB, ratio), or is skipped.
        assert len(rows) == 2 or (skipped and not rows), method
        for wall, cpu, peak, ratio in rows:
            assert int(wall) > 0 and int(cpu) > 0 and float(peak) > 0 and float(ratio) > 0
    breakdown = re.search(r"build_collage (\d+) ms vs floor (\d+) ms .* adds (-?\d+) ms", out)
    assert breakdown and int(breakdown.group(1)) > 0 and int(breakdown.group(2)) > 0
    startup = re.search(
        r"^start-up: .* (\d+) ms vs the floor's imports (\d+) ms \(([+-]\d+) ms\)", out, re.M
    )
    assert startup and int(startup.group(1)) > 0 and int(startup.group(2)) > 0
    assert re.search(r"^  (MET    |NOT MET)  start-up <= floor's \+ \d+ ms: ", out, re.M)
    scores = re.findall(r"^quality (\d+x\d+): mean tile PSNR ([\d.]+) dB", out, re.MULTILINE)
    assert [size for size, _ in scores] == ["1080x1920", "720x1280"]
    assert all(float(score) > 20 for _, score in scores)
    downloads = re.search(r"downloads: .*: (\d+) ms; .* connections (\d+), failures (\d+)", out)
    assert downloads and int(downloads.group(1)) > 0 and int(downloads.group(2)) >= 1
    assert "targets:" in out and re.search(r"^  (MET    |NOT MET)  engine <= ", out, re.MULTILINE)
    thumbnail = r"^  (MET    |NOT MET)  thumbnail adds <= 5% .*: cpu ([\d.]+) x, peak RSS ([\d.]+)"
    costs = re.findall(thumbnail, out, re.MULTILINE)
    assert len(costs) == 2 and all(float(cpu) > 0 and float(rss) > 0 for _, cpu, rss in costs)
    last = out.strip().splitlines()[-1]
    assert last == "render-bench: all targets met" or last.startswith(
        "render-bench: targets not met: "
    )
    for name in ("render_contact_sheet.png", "render_contact_sheet_720x1280.png"):
        sheet = Image.open(tmp_path / name)
        assert sheet.format == "PNG" and sheet.size == (2 * 1512 + 16, 1920)
