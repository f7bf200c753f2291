"""Fail when a deployed module's maintainability index (radon's MI) is below the floor.

    python scripts/maintainability.py functions   # every module under functions/, MI >= 40

radon ranks every MI above 19 "A", so its own rank cannot hold the floor the project keeps;
this reads the index itself. Complexity per block is xenon's gate (`make lint`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FLOOR = 40.0  # the Powertools handler cookbook's lowest module scores 57


def indexes(root: Path) -> dict[Path, float]:
    from radon.metrics import mi_visit

    return {
        path: mi_visit(path.read_text(), multi=True)
        for path in sorted(root.rglob("*.py"))
        if path.stat().st_size  # an empty __init__.py has no index
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--floor", type=float, default=FLOOR)
    args = parser.parse_args(argv)
    found = {path: mi for root in args.roots for path, mi in indexes(root).items()}
    low = {path: mi for path, mi in found.items() if mi < args.floor}
    for path, mi in sorted(low.items(), key=lambda item: item[1]):
        print(f"{path}: maintainability index {mi:.1f} < {args.floor:.0f}", file=sys.stderr)
    lowest = min(found.values(), default=100.0)
    print(f"maintainability: {len(found)} modules, lowest {lowest:.1f} (floor {args.floor:.0f})")
    return 1 if low else 0


if __name__ == "__main__":
    raise SystemExit(main())
