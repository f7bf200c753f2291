"""`collage run` killed mid-map (kill -9) and run again: it resumes the same run, renders no
finished creator again and ends with the report an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collage_tools.cli import main
from collage_tools.cover_server import CoverServer
from collage_tools.covers import make_cover
from tests.support.workflow import csv_text

pytestmark = pytest.mark.e2e
RUN = "import sys; from collage_tools.cli import main; sys.exit(main(sys.argv[1:]))"
CREATORS = 24


def _done(out: Path) -> dict[str, Path]:
    records = {}
    for record in (out / ".collage" / "temp").rglob("results/*.json"):
        try:
            if json.loads(record.read_text())["status"] == "ok":
                records[record.stem] = record
        except (OSError, ValueError):
            continue
    return records


def _finished_files(out: Path, creators: dict[str, Path]) -> dict[Path, int]:
    """The collages and result records of these creators, with their modification times."""
    files = {}
    for path in out.rglob("*"):
        if path.suffix == ".jpg":
            creator = path.stem.split("_")[0]
        elif path.parent.name == "results":
            creator = path.stem
        else:
            continue
        if creator in creators:
            files[path] = path.stat().st_mtime_ns
    return files


@pytest.mark.parametrize("trigger", ["csv", "message"])
def test_a_killed_run_resumes_without_rendering_a_finished_creator_again(trigger, tmp_path, capsys):
    with CoverServer(latency=0.1) as server:
        cover = make_cover(5, (216, 384))
        rows = [
            (f"c{n:02d}", server.add(f"/r/{n}/{k}.jpg", cover), "2025-01-01")
            for n in range(CREATORS)
            for k in range(2)
        ]
        source, out = tmp_path / "month.csv", tmp_path / "out"
        source.write_text(csv_text(rows))
        if trigger == "message":  # the same CSV inside an SQS message (--message)
            body = {"processing_type": "csv_data", "csv_data": csv_text(rows)}
            source = tmp_path / "message.json"
            source.write_text(json.dumps({**body, "output_prefix": "resumed"}))
        given = ["--message", str(source)] if trigger == "message" else [str(source)]
        command = [sys.executable, "-c", RUN, "run", *given, "--out", str(out)]
        command += ["--allow-loopback", "--concurrency", "1"]
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ends = time.monotonic() + 240
        while len(_done(out)) < 4 and first.poll() is None and time.monotonic() < ends:
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = _done(out)
        assert 4 <= len(before) < CREATORS, "the first run was not stopped mid-map"
        finished = _finished_files(out, before)
        hits_before = dict(server.hits)

        assert main(command[3:]) == 0  # the same command again, in this process
    captured = capsys.readouterr()
    assert "creators already done" in captured.err
    earlier = int(captured.err.split("creators already done")[0].rsplit(": ", 1)[1])
    assert earlier >= len(before)
    assert f"({earlier} before the restart)" in captured.err  # on the progress line
    summary = json.loads(captured.out)
    assert summary["creators"] == {
        "total": CREATORS,
        "succeeded": CREATORS,
        "partial": 0,
        "failed": 0,
    }
    # Nothing finished before the kill was written again, nor were its covers fetched again.
    assert len(finished) == 3 * len(before)  # its collage, its thumbnail, its record
    for path, stamp in finished.items():
        assert path.stat().st_mtime_ns == stamp, path
    for name in before:
        n = int(name[1:])
        assert all(server.hits[f"/r/{n}/{k}.jpg"] == hits_before[f"/r/{n}/{k}.jpg"] for k in (0, 1))
    (report,) = out.rglob("report_*.json")
    creators = json.loads(report.read_text())["creators"]
    assert sorted(c["creator"] for c in creators) == [f"c{n:02d}" for n in range(CREATORS)]
    collages = [p for p in out.rglob("c*_*.jpg") if "thumbs" not in p.parts]
    assert len(collages) == CREATORS  # one collage each, one run's keys
