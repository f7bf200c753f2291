"""One creator's covers -> JPEG pages: download, decode and compose, overlapped.

Worker threads fetch a cover and decode it to its small tile straight away (Pillow releases
the GIL while decoding), so decoding overlaps other downloads and a full-size cover lives only
as long as its own decode. The calling thread places tiles in source order as soon as all
earlier covers are settled, and encodes a page as soon as it is full.

Placement: tiles fill each page row-major; `rows*cols` tiles per page, then the next page.
With on_failure='placeholder' a failed cover keeps its cell and shows the placeholder tile;
with 'close_up' later tiles move up into it. A page on which no cover rendered is not written,
so no sources, or only failures, give no pages at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from collage.engine.download import Downloader, DownloadError, FetchPolicy
from collage.engine.render import (
    CoverError,
    Layout,
    decode_tile,
    encode_jpeg,
    new_canvas,
    paste_tile,
    placeholder_tile,
)


@dataclass
class TileOutcome:
    index: int
    source: str
    ok: bool
    error_code: str | None = None
    error: str | None = None
    bytes: int = 0
    page: int | None = None  # 1-based page it landed on (None if it failed)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "source": self.source,
            "ok": self.ok,
            "error_code": self.error_code,
            "error": self.error,
            "bytes": self.bytes,
            "page": self.page,
        }


@dataclass
class CollageResult:
    pages: list[bytes]  # JPEG bytes, page 1 first; [] when no cover could be rendered
    outcomes: list[TileOutcome]  # one per source, in source order
    download_seconds: float  # summed over covers: fetching (network or disk)
    render_seconds: float  # summed: decoding to tiles, placing, encoding pages
    bytes_downloaded: int
    wall_seconds: float = 0.0  # the whole call

    @property
    def failed(self) -> list[TileOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]


def is_url(source: str) -> bool:
    """Anything with a scheme goes to the Downloader (which refuses all but http/https)."""
    return "://" in source


def read_local(path: str, max_bytes: int) -> bytes:
    """A cover from disk, with the same size limit as a download."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise CoverError("file_error", f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise CoverError("too_large", f"{path} is larger than the limit of {max_bytes} bytes")
    return data


@dataclass
class _Fetched:
    index: int
    tile: Image.Image | None = None
    size: int = 0
    code: str | None = None
    error: str | None = None
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0


def _load_one(
    index: int, source: str, layout: Layout, downloader: Downloader, max_bytes: int
) -> _Fetched:
    """Fetch and decode one cover (runs on a worker thread); never raises for a bad cover."""
    result = _Fetched(index)
    started = time.perf_counter()
    try:
        data = downloader.fetch(source) if is_url(source) else read_local(source, max_bytes)
        result.size = len(data)
        fetched = time.perf_counter()
        result.fetch_seconds = fetched - started
        result.tile = decode_tile(data, layout)
        del data  # the full-size bytes go now, not when the tile is placed
        result.decode_seconds = time.perf_counter() - fetched
    except (DownloadError, CoverError) as error:
        result.code, result.error = error.code, str(error)
        if not result.fetch_seconds:
            result.fetch_seconds = time.perf_counter() - started
    return result


@dataclass
class _Pages:
    """Places settled covers in source order and encodes each page as soon as it is full."""

    layout: Layout
    slots: int = 0  # cells used so far, over all pages
    canvas: Image.Image | None = None
    page_has_cover: bool = False
    encoded: list[bytes] = field(default_factory=list)
    encode_seconds: float = 0.0
    _placeholder: Image.Image | None = None

    def place(self, tile: Image.Image | None) -> int | None:
        """Put the next cover (None: a failed one); returns its 1-based page, if it has one."""
        if tile is None and self.layout.on_failure == "close_up":
            return None
        if self.canvas is None:
            self.canvas = new_canvas(self.layout)
        if tile is None:
            if self._placeholder is None:
                self._placeholder = placeholder_tile(self.layout)
            paste_tile(self.canvas, self._placeholder, self.slots, self.layout)
        else:
            paste_tile(self.canvas, tile, self.slots, self.layout)
            self.page_has_cover = True
        page = len(self.encoded) + 1
        self.slots += 1
        if self.slots % self.layout.cells == 0:
            self.finish_page()
        return page if tile is not None else None

    def finish_page(self) -> None:
        if self.canvas is not None and self.page_has_cover:
            started = time.perf_counter()
            self.encoded.append(encode_jpeg(self.canvas, self.layout.quality))
            self.encode_seconds += time.perf_counter() - started
        elif self.canvas is not None:
            # Only placeholders on this page: drop it, and start the next page afresh.
            self.slots -= self.layout.cells
        self.canvas = None
        self.page_has_cover = False


def build_collage(
    sources: Sequence[str],
    layout: Layout,
    *,
    policy: FetchPolicy,
    max_workers: int = 8,
    deadline: float | None = None,
) -> CollageResult:
    """Render `sources` (http(s) URLs and/or local paths, already in tile order) into pages.

    Tiles fill row-major; more than rows*cols sources give more pages. `deadline` is a
    time.monotonic() value after which no download starts or retries.
    """
    started = time.perf_counter()
    sources = list(sources)
    outcomes = [TileOutcome(index, source, ok=False) for index, source in enumerate(sources)]
    pages = _Pages(layout)
    settled: dict[int, _Fetched] = {}
    next_index = 0
    fetch_seconds = decode_seconds = place_seconds = 0.0
    workers = max(1, min(max_workers, len(sources)))
    with (
        Downloader(policy, pool_size=workers, deadline=deadline) as downloader,
        ThreadPoolExecutor(workers, thread_name_prefix="cover") as pool,
    ):
        pending = {
            pool.submit(_load_one, index, source, layout, downloader, policy.max_bytes)
            for index, source in enumerate(sources)
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = future.result()
                settled[item.index] = item
                fetch_seconds += item.fetch_seconds
                decode_seconds += item.decode_seconds
            placing = time.perf_counter()
            while next_index in settled:
                item = settled.pop(next_index)
                outcome = outcomes[next_index]
                outcome.bytes = item.size
                outcome.ok = item.tile is not None
                outcome.error_code, outcome.error = item.code, item.error
                outcome.page = pages.place(item.tile)
                next_index += 1
            place_seconds += time.perf_counter() - placing
        bytes_downloaded = downloader.bytes_downloaded
    placing = time.perf_counter()
    pages.finish_page()
    place_seconds += time.perf_counter() - placing
    return CollageResult(
        pages=pages.encoded,
        outcomes=outcomes,
        download_seconds=fetch_seconds,
        render_seconds=decode_seconds + place_seconds,
        bytes_downloaded=bytes_downloaded,
        wall_seconds=time.perf_counter() - started,
    )
