"""Hostile shapes at scale: 200,000 creators with one cover each, and one creator with 100,000
covers. Each step runs in a child process (the split benchmark's), so its peak RSS is its own,
and must stay within the bound docs/failure-modes.md gives (512 MB, half the functions'
1,024 MB)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from collage.sheet import PAGE_SIZE

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from split_bench import AGGREGATE, GENERATE, RSS_LIMIT_MB, SPLIT, run_child  # noqa: E402

pytestmark = pytest.mark.slow


def split_in_child(tmp_path: Path, rows: int, per_creator: int) -> tuple[dict, dict, Path]:
    """(the split's run figures, its summary, the items file) for a generated CSV."""
    csv_path, items, who = tmp_path / "c.csv", tmp_path / "items.json", tmp_path / "who.jsonl"
    run_child(GENERATE, str(BENCHMARKS), str(csv_path), str(rows), "0", str(per_creator))
    split = run_child(SPLIT, str(csv_path), str(items), str(tmp_path), str(who))
    return split, json.loads(split["output"]), items


def test_200000_creators_with_one_cover_each(tmp_path):
    split, summary, _ = split_in_child(tmp_path, 200_000, per_creator=1)
    assert summary["creators"] > 199_000 and summary["covers_cut"] == 0
    assert split["rss_mb"] < RSS_LIMIT_MB, split
    aggregate = run_child(AGGREGATE, str(tmp_path / "who.jsonl"), split["output"])
    written = json.loads(aggregate["output"])
    assert written["creators"] == summary["creators"]
    # The contact sheet: every creator, and the partial ones again first, PAGE_SIZE a page.
    entries = written["creators"] + written["partial"]
    assert written["partial"] > 0 and written["sheet_pages"] == -(-entries // PAGE_SIZE)
    assert aggregate["rss_mb"] < RSS_LIMIT_MB, aggregate


def test_one_creator_with_100000_covers_is_cut_and_the_cut_reported(tmp_path):
    split, summary, items = split_in_child(tmp_path, 100_000, per_creator=100_000)
    (item,) = json.loads(items.read_bytes())
    assert len(item["urls"]) == 35 and len(item["lines"]) == 35
    assert item["cut"] == summary["covers_cut"] == summary["rows"] - 35 > 99_000
    assert split["rss_mb"] < RSS_LIMIT_MB, split
    assert len(items.read_bytes()) < 256 * 1024  # one map item, far below the payload limit
