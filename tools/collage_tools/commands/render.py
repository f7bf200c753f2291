"""`collage render`: build one collage from local files and/or URLs, as the Lambda task does.

Covers fill the grid row-major in the order given (a directory adds its files sorted by name).
More covers than rows*cols give more pages: OUT, then OUT with -2, -3, ... before its suffix
(out.jpg, out-2.jpg, ...). Exit status: 0 when at least one page was written, 1 when no cover
could be rendered or a page could not be written, 2 for bad arguments.

What is read and written: a directory gives only its own regular image files; a symlink that
leads out of it, a FIFO, a socket, a device, a sub-directory or a file whose first bytes are no
image is skipped and named on stderr (a FIFO in it is never opened, so nothing hangs). A path
named directly is read as asked, wherever it is (a pipe from `<(...)` too). -o makes the folders
it needs; it must not be a folder, a FIFO, a socket or a block device. A character device
(/dev/null, a terminal) is written in place, one page only.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import time
from pathlib import Path

from collage.config import ConfigError, build_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="file, directory or URL")
    parser.add_argument(
        "-o", "--output", required=True, help="JPEG to write (missing folders are made)"
    )
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


class OutputError(Exception):
    """A page cannot be written where -o says: one line; exit 2 for a bad -o, else 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def file_kind(path: Path) -> str | None:
    """'file', or what else the path is (following symlinks); None when it does not exist.
    Uses stat alone: a FIFO is never opened to find out."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
    )
    return next((name for test, name in kinds if test(mode)), "a block device")


def _entry_problem(entry: Path, root: Path) -> str | None:
    """Why a directory entry is not read as a cover, or None."""
    if entry.is_symlink():
        try:
            target = entry.resolve(strict=True)
        except (OSError, RuntimeError):  # missing target, or a loop
            return "a broken symlink"
        if not target.is_relative_to(root):
            return f"a symlink out of the folder (to {target})"
    kind = file_kind(entry)
    if kind != "file":
        return f"not a regular file ({kind})"
    return _not_an_image(entry)


def _not_an_image(path: Path) -> str | None:
    """Why a folder's regular file is no cover: its first bytes are no image format at all (a
    notes.txt among the covers would otherwise take a cell and push a cover onto a page of its
    own). An image in a format the engine refuses (TIFF, ...) stays a cover and is named as
    failed, with the reason."""
    from collage.engine.formats import SNIFF_BYTES, sniff

    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"
    return None if sniff(head) else "not an image"


def expand_sources(images: list[str]) -> tuple[list[str], list[str]]:
    """(sources, skipped): URLs and files as given; a directory becomes its regular, non-hidden
    files sorted by name. `skipped` says what was left out and why, one line each."""
    from collage.engine.pipeline import is_url

    sources: list[str] = []
    skipped: list[str] = []
    for image in images:
        if not is_url(image) and file_kind(Path(image)) == "a folder":
            _add_folder(Path(image), sources, skipped)
        else:  # a URL, or a path named directly: read as asked (a pipe from <(...) too)
            sources.append(image)
    return sources, skipped


def _add_folder(folder: Path, sources: list[str], skipped: list[str]) -> None:
    root = folder.resolve()
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as error:
        skipped.append(f"{folder}: cannot list it: {error.strerror or error}")
        return
    for entry in entries:
        problem = _entry_problem(entry, root)
        if problem:
            skipped.append(f"{entry}: {problem}")
        else:
            sources.append(str(entry))


def check_output(raw: str, pages_at_most: int) -> Path:
    """-o as a Path, or OutputError (exit 2) when no page could ever be written there."""
    path = Path(raw)
    kind = file_kind(path)
    if raw.endswith(("/", os.sep)) or kind == "a folder":
        raise OutputError(f"-o {raw} is a folder; give a file name, e.g. {path / 'collage.jpg'}", 2)
    if kind not in (None, "file", "a character device"):
        raise OutputError(f"-o {raw} is {kind}; give a file name", 2)
    if kind == "a character device" and pages_at_most > 1:
        raise OutputError(f"-o {raw} is a device, which takes one page; these covers fill more", 2)
    ancestor = path.parent
    while file_kind(ancestor) is None and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if file_kind(ancestor) != "a folder":
        raise OutputError(f"-o {raw}: {ancestor} is not a folder", 2)
    return path


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
    """A file through a temp file and a rename, so a reader never sees half a JPEG; a character
    device in place (renaming over /dev/full would replace the device)."""
    if file_kind(path) == "a character device":
        with os.fdopen(os.open(path, os.O_WRONLY), "wb") as device:
            device.write(data)
        return
    from collage_tools.files import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, binary=True) as handle:
        handle.write(data)


def write_pages(output: Path, pages: list[bytes]) -> list[Path]:
    """Each page to its path (out.jpg, out-2.jpg, ...); OutputError naming the one that failed."""
    paths = page_paths(output, len(pages))
    for path, page in zip(paths, pages, strict=True):
        try:
            _write(path, page)
        except OSError as error:  # no permission, a read-only or full disk, ...
            raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
        print(f"wrote {path} ({len(page) // 1024} KB)")
    return paths


def run(args: argparse.Namespace) -> int:
    try:
        return _render(args)
    except (ConfigError, OutputError) as error:
        print(f"collage render: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)


def _render(args: argparse.Namespace) -> int:
    from collage.engine.fetch_policy import FetchPolicy
    from collage.engine.pipeline import build_collage, is_url
    from collage.engine.render import Layout

    config = build_config(_overrides(args))
    sources, skipped = expand_sources(args.images)
    for line in skipped:
        print(f"collage render: skipped {line}", file=sys.stderr)
    if not sources:
        print("collage render: no images (nothing readable was given)", file=sys.stderr)
        return 1
    layout = Layout.from_config(config)
    output = check_output(args.output, -(-len(sources) // layout.cells))
    guard = None
    if any(is_url(source) for source in sources):  # url_guard only when there are URLs
        from collage_tools.loopback import local_guard

        guard = local_guard(args.allow_loopback)
    policy = FetchPolicy.from_config(config, guard)
    started = time.perf_counter()
    result = build_collage(sources, layout, policy=policy, max_workers=config.max_workers)
    elapsed = time.perf_counter() - started

    paths = write_pages(output, result.pages)
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
