"""The demo behind `make demo`: the whole workflow on the sample CSV, offline.

Generates the sample covers, serves them from a loopback HTTP server (the URLs in
examples/covers.csv point at 127.0.0.1:8642), runs `collage run` on the embedded local AWS, and
says where the collages are.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "covers.csv"
PORT = 8642
COVER_SIZE = (720, 1280)


def serve_sample_covers(server, csv_text: str) -> None:
    """Add a generated cover for every `/covers/NNN.jpg` the sample names (others stay 404)."""
    from collage_tools.covers import make_cover

    for number in sorted({int(n) for n in re.findall(r"/covers/(\d+)\.jpg", csv_text)}):
        server.add(f"/covers/{number:03d}.jpg", make_cover(number, COVER_SIZE, quality=88))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", type=Path, default=SAMPLE)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args(argv)

    from collage_tools.cli import main as collage_main
    from collage_tools.cover_server import CoverServer

    text = args.csv.read_text(encoding="utf-8")
    try:
        server = CoverServer(port=PORT).start()
    except OSError:  # port taken: serve elsewhere and point a copy of the CSV there
        server = CoverServer().start()
    csv_path = args.csv
    if not server.base_url.endswith(f":{PORT}"):
        text = text.replace(f"http://127.0.0.1:{PORT}", server.base_url)
        csv_path = Path(tempfile.mkdtemp()) / args.csv.name
        csv_path.write_text(text, encoding="utf-8")
    print(f"demo: serving sample covers at {server.base_url}", file=sys.stderr)
    try:
        serve_sample_covers(server, text)
        code = collage_main(["run", str(csv_path), "--out", str(args.out), "--allow-loopback"])
    finally:
        server.stop()
    collages = sorted(p for p in args.out.rglob("*.jpg") if p.parent.name != "thumbs")
    reports = sorted(args.out.rglob("report_*.json")) + sorted(args.out.rglob("report_*.html"))
    print(f"\ndemo: {len(collages)} collages under {args.out}/", file=sys.stderr)
    for path in collages + reports:
        print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
