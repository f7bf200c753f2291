"""Where run / submit / watch say the contact sheet is, and what --open opens."""

from __future__ import annotations

import webbrowser

from collage_tools.commands.submit import show_sheet

KEY = "s3-trigger/csv-files/c/collages/report_20250119T103000Z.html"
SUMMARY = {"sheet": f"s3://out-bucket/{KEY}"}


def test_a_downloaded_sheet_is_said_by_its_path_and_opened_as_a_file(tmp_path, capsys, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    show_sheet(SUMMARY, tmp_path / "out", open_it=True)
    assert capsys.readouterr().err == f"collage: contact sheet: {tmp_path / 'out' / KEY}\n"
    assert opened == [(tmp_path / "out" / KEY).as_uri()]


def test_without_a_download_the_key_is_said_and_nothing_opens(capsys, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    show_sheet(SUMMARY, None, open_it=True)
    said = capsys.readouterr().err.splitlines()
    assert said == [
        f"collage: contact sheet: s3://out-bucket/{KEY}",
        "collage: --open needs the run on disk: add --download DIR",
    ]
    assert opened == []


def test_no_browser_is_said_and_a_run_without_a_sheet_says_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    show_sheet(SUMMARY, tmp_path, open_it=True)
    assert "no browser could be started here" in capsys.readouterr().err
    show_sheet({"status": "failed"}, tmp_path, open_it=True)
    assert capsys.readouterr().err == ""
