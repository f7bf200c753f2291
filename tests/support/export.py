"""Helpers for the export-urls tests: run the command in-process, read what it wrote."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from collage_tools.commands import export_urls


def export(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    export_urls.add_arguments(parser)
    return export_urls.run(parser.parse_args(list(argv)))


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))
