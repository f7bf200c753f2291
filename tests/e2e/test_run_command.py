"""`collage run` as a user runs it: exit status, summary on stdout, the output bucket on disk."""

from __future__ import annotations

import json

import pytest

from collage_tools.cli import main
from tests.support.workflow import csv_text

pytestmark = pytest.mark.e2e


def test_run_writes_the_output_bucket_and_prints_the_summary(tmp_path, covers, capsys):
    source = tmp_path / "covers.csv"
    rows = [("gus", url, "2025-01-01") for url in covers[:3]]
    rows.append(("gus", "ftp://user:secret@cdn.example/x.jpg", ""))
    source.write_text(csv_text(rows))
    out = tmp_path / "out"
    assert main(["run", str(source), "--out", str(out), "--allow-loopback"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds the summary and nothing else
    assert summary["status"] == "completed_with_failures" and summary["collages"] == 1
    # The row issue, as in the report: line, column, the value quoted without its password.
    (issue,) = summary["row_issues_first"]
    assert (issue["line"], issue["column"]) == (5, "cover_url")
    assert issue["value"].startswith("ftp://") and "secret" not in issue["value"]
    assert "collage: execution covers-" in captured.err
    # --out is the output bucket; the run's working files are apart, in .collage/
    files = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".collage" not in p.parts
    )
    folder = "s3-trigger/csv-files/covers/collages/"
    assert [name.removeprefix(folder).split("_")[0] for name in files] == [
        "gus",  # the collage
        "report",  # the contact sheet (.html)
        "report",  # the report (.json)
        "thumbs/gus",  # the collage's thumbnail, for the sheet
    ]
    # The sheet's path is said last, and it is on disk.
    sheet = out / summary["sheet"].split("/", 3)[3]
    assert sheet.is_file() and captured.err.rstrip().endswith(f"contact sheet: {sheet}")


def test_loopback_covers_are_refused_without_the_flag(tmp_path, cover_server, covers, capsys):
    source = tmp_path / "covers.csv"
    source.write_text(csv_text([("hal", covers[5], "2025-01-01")]))
    before = cover_server.hits.copy()
    assert main(["run", str(source), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["creators"]["failed"] == 1 and summary["covers"]["failed"] == 1
    assert cover_server.hits == before, "a refused URL must never be fetched"
    (report,) = (tmp_path / "out").rglob("report_*.json")
    failure = json.loads(report.read_text())["creators"][0]["failures"][0]
    assert failure["code"] == "address_blocked"


def test_message_run_and_a_refused_message(tmp_path, covers, capsys):
    message = {
        "processing_type": "csv_data",
        "csv_data": csv_text([("ivy", covers[6], "2025-01-01")]),
        "processing_config": {"rows": 1, "cols": 1},
        "output_prefix": "batch-7/",
    }
    path = tmp_path / "message.json"
    path.write_text(json.dumps(message))
    assert (
        main(["run", "--message", str(path), "--out", str(tmp_path / "out"), "--allow-loopback"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["collages_at"].endswith("/sqs-trigger/batch-7/collages/")
    path.write_text(json.dumps({**message, "processing_config": {"rows": 0}}))
    assert main(["run", "--message", str(path), "--out", str(tmp_path / "out2")]) == 1
    assert "the message would be refused: processing_config: rows" in capsys.readouterr().err
