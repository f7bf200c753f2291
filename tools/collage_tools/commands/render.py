"""`collage render`: build one collage from local files and/or URLs, as the Lambda task does.

Covers fill the grid row-major in the order given (a directory adds its files sorted by name).
More covers than rows*cols give more pages: OUT, then OUT with -2, -3, ... before its suffix
(out.jpg, out-2.jpg, ...). Exit status: 0 when at least one page was written, 1 when no cover
could be rendered, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from collage.config import ConfigError, build_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="file, directory or URL")
    parser.add_argument("-o", "--output", required=True, type=Path, help="JPEG to write")
    parser.add_argument("--rows", type=int, help="rows per page (default 5)")
    parser.add_argument("--cols", type=int, help="columns per page (default 7)")
    parser.add_argument("--quality", type=int, help="JPEG quality 1-100 (default 95)")
    parser.add_argument("--tile", metavar="WxH", help="tile size in pixels (default 216x384)")
    parser.add_argument("--fit", choices=("crop", "contain"), help="fill the tile, or letterbox")
    parser.add_argument("--background", metavar="#RRGGBB", help="page colour (default #000000)")
    parser.add_argument(
        "--on-failure",
        choices=("placeholder", "close_up"),
        help="a failed cover leaves a marked tile (default), or the grid closes up",
    )
    parser.add_argument("--max-workers", type=int, help="parallel downloads (default 8)")
    parser.add_argument("--timeout", type=float, help="seconds per read on a download (default 30)")
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="allow URLs on 127.0.0.1/localhost (refused by default, as in the deployed stack)",
    )


def page_paths(output: Path, pages: int) -> list[Path]:
    """out.jpg, out-2.jpg, out-3.jpg, ..."""
    return [
        output if page == 1 else output.with_name(f"{output.stem}-{page}{output.suffix}")
        for page in range(1, pages + 1)
    ]


def expand_sources(images: list[str]) -> list[str]:
    """URLs as given; a directory becomes its regular, non-hidden files sorted by name."""
    from collage.engine.pipeline import is_url

    sources: list[str] = []
    for image in images:
        path = Path(image)
        if not is_url(image) and path.is_dir():
            entries = sorted(
                p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
            )
            sources.extend(str(p) for p in entries)
        else:
            sources.append(image)
    return sources


def _overrides(args: argparse.Namespace) -> dict:
    names = ("rows", "cols", "quality", "fit", "background", "on_failure", "max_workers", "timeout")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.tile is not None:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.tile)
        if not match:
            raise ConfigError(f"--tile must look like 216x384, got {args.tile!r}")
        overrides["tile_width"], overrides["tile_height"] = int(match[1]), int(match[2])
    return overrides


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)  # a reader never sees half a JPEG


def run(args: argparse.Namespace) -> int:
    from collage.engine.fetch_policy import FetchPolicy
    from collage.engine.pipeline import build_collage, is_url
    from collage.engine.render import Layout

    try:
        config = build_config(_overrides(args))
    except ConfigError as error:
        print(f"collage render: {error}", file=sys.stderr)
        return 2
    sources = expand_sources(args.images)
    if not sources:
        print("collage render: no images (the directories given are empty)", file=sys.stderr)
        return 1
    layout = Layout.from_config(config)
    guard = None
    if any(is_url(source) for source in sources):  # url_guard only when there are URLs
        from collage_tools.loopback import local_guard

        guard = local_guard(args.allow_loopback)
    policy = FetchPolicy.from_config(config, guard)
    started = time.perf_counter()
    result = build_collage(sources, layout, policy=policy, max_workers=config.max_workers)
    elapsed = time.perf_counter() - started

    paths = page_paths(args.output, len(result.pages))
    if paths:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, page in zip(paths, result.pages, strict=True):
        _write(path, page)
        print(f"wrote {path} ({len(page) // 1024} KB)")
    failed = result.failed
    print(
        f"{len(sources)} covers: {len(sources) - len(failed)} rendered, {len(failed)} failed; "
        f"{len(paths)} page(s) of {layout.rows}x{layout.cols}, "
        f"{layout.canvas_size[0]}x{layout.canvas_size[1]} px, in {elapsed:.2f} s"
    )
    if failed:
        from collage.engine.url_guard import scrub_url  # socket, ipaddress: only when needed

        for outcome in failed:
            shown = scrub_url(outcome.source) if is_url(outcome.source) else outcome.source
            print(f"  failed #{outcome.index + 1} {shown}: {outcome.error_code}: {outcome.error}")
    if not result.pages:
        print("collage render: no cover could be rendered; nothing written", file=sys.stderr)
        return 1
    return 0
