"""One creator's covers -> JPEG pages: download, decode and compose, overlapped.

`max_workers` fetch threads download (or read) covers; each fetched cover goes straight to a
decode thread (one per CPU; Pillow releases the GIL while decoding) and is turned into its
small tile, after which its bytes are dropped. Fetch threads never wait for decoding, so
decoding overlaps the next downloads; at most fetch + decode threads' worth of covers are held
as bytes at once. The calling thread places tiles in source order as soon as all earlier
covers are settled, and encodes a page as soon as it is full.

Placement: tiles fill each page row-major; `rows*cols` tiles per page, then the next page.
With on_failure='placeholder' a failed cover keeps its cell and shows the placeholder tile;
with 'close_up' later tiles move up into it. A page on which no cover rendered is not written,
so no sources, or only failures, give no pages at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from threading import Semaphore
from typing import Any

from PIL import Image

from collage.engine.fetch_policy import DownloadError, FetchPolicy
from collage.engine.render import (
    CoverError,
    Layout,
    decode_tile,
    encode_jpeg,
    encode_thumbnail,
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
    thumbnail: bytes | None = None  # a small JPEG of page 1, when asked for

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
            # read(n) allocates n bytes up front: ask for the file's size, not the limit (a
            # 20 MB buffer per cover costs page faults, twice the time of the read itself).
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(min(size, max_bytes) + 1 if size else max_bytes + 1)
            if 0 < size < len(data):  # it grew since fstat: read on, up to the limit
                data += handle.read(max_bytes + 1 - len(data))
    except OSError as error:
        raise CoverError("file_error", f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise CoverError("too_large", f"{path} is larger than the limit of {max_bytes} bytes")
    return data


@dataclass
class _Cover:
    """One cover on its way through the pipeline."""

    index: int
    data: bytes | None = None  # set between fetch and decode only
    tile: Image.Image | None = None
    size: int = 0
    code: str | None = None
    error: str | None = None
    fetch_seconds: float = 0.0
    decode_seconds: float = 0.0
    page: int | None = None

    def fail(self, error: DownloadError | CoverError) -> _Cover:
        self.code, self.error, self.data = error.code, str(error), None
        return self


def _fetch(
    cover: _Cover, source: str, downloader: Any, layout: Layout, max_bytes: int, held: Semaphore
) -> _Cover:
    """Runs on a fetch thread; never raises for a bad cover. A local file is decoded right here
    (there is no network wait to overlap); downloaded bytes go on to a decode thread."""
    held.acquire()  # released when the bytes are gone (after decode, or right now on failure)
    started = time.perf_counter()
    try:
        cover.data = downloader.fetch(source) if is_url(source) else read_local(source, max_bytes)
        cover.size = len(cover.data)
    except (DownloadError, CoverError) as error:
        cover.fail(error)
    except BaseException:
        held.release()
        raise
    cover.fetch_seconds = time.perf_counter() - started
    if cover.data is None:
        held.release()
    elif not is_url(source):
        return _decode(cover, layout, held)
    return cover


def _decode(cover: _Cover, layout: Layout, held: Semaphore) -> _Cover:
    """Runs on a decode thread; drops the full-size bytes as soon as the tile exists."""
    started = time.perf_counter()
    try:
        assert cover.data is not None  # set by the fetch that queued this decode
        cover.tile = decode_tile(cover.data, layout)
        cover.data = None
    except CoverError as error:
        cover.fail(error)
    finally:
        held.release()
    cover.decode_seconds = time.perf_counter() - started
    return cover


def cpu_count() -> int:
    """CPUs this process may use (Lambda and containers give fewer than the host has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class _Pages:
    """Places settled covers in source order and encodes each page as soon as it is full."""

    layout: Layout
    slots: int = 0  # cells used so far, over all pages
    canvas: Image.Image | None = None
    page_has_cover: bool = False
    encoded: list[bytes] = field(default_factory=list)
    thumbnail_width: int | None = None
    thumbnail: bytes | None = None
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
            if not self.encoded and self.thumbnail_width:
                self.thumbnail = encode_thumbnail(self.canvas, self.thumbnail_width)
            self.encoded.append(encode_jpeg(self.canvas, self.layout.quality))
        elif self.canvas is not None:
            # Only placeholders on this page: drop it, and start the next page afresh.
            self.slots -= self.layout.cells
        self.canvas = None
        self.page_has_cover = False


class _NoDownloads:
    """Stands in for a Downloader when every source is a local file."""

    bytes_downloaded = 0

    def __enter__(self) -> _NoDownloads:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _downloader_for(
    sources: Sequence[str], policy: FetchPolicy, pool_size: int, deadline: float | None
) -> Any:
    if not any(is_url(source) for source in sources):
        return _NoDownloads()
    from collage.engine.download import Downloader  # requests: imported only when needed

    return Downloader(policy, pool_size=pool_size, deadline=deadline)


def build_collage(
    sources: Sequence[str],
    layout: Layout,
    *,
    policy: FetchPolicy,
    max_workers: int = 8,
    deadline: float | None = None,
    thumbnail_width: int | None = None,
) -> CollageResult:
    """Render `sources` (http(s) URLs and/or local paths, already in tile order) into pages.

    Tiles fill row-major; more than rows*cols sources give more pages. `deadline` is a
    time.monotonic() value after which no download starts or retries. With
    `thumbnail_width`, page 1 is also shrunk to a small JPEG about that wide (the run's
    contact sheet shows it), from the canvas in memory: no second decode.
    """
    started = time.perf_counter()
    sources = list(sources)
    covers = [_Cover(index) for index in range(len(sources))]
    pages = _Pages(layout, thumbnail_width=thumbnail_width)
    settled: dict[int, _Cover] = {}
    next_index = 0
    place_seconds = 0.0
    fetch_workers = max(1, min(max_workers, len(sources)))
    if not any(is_url(source) for source in sources):
        fetch_workers = min(fetch_workers, cpu_count())  # local files: reading is decoding
    # Decoding is CPU work: more threads than CPUs only adds switching. Fetch threads never
    # wait for a decode, so a slow decode does not delay the next download.
    decode_workers = min(cpu_count(), fetch_workers)
    held = Semaphore(fetch_workers + decode_workers)
    with (
        _downloader_for(sources, policy, fetch_workers, deadline) as downloader,
        ThreadPoolExecutor(fetch_workers, thread_name_prefix="fetch") as fetchers,
        ThreadPoolExecutor(decode_workers, thread_name_prefix="decode") as decoders,
    ):
        pending = {
            fetchers.submit(_fetch, cover, source, downloader, layout, policy.max_bytes, held)
            for cover, source in zip(covers, sources, strict=True)
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cover = future.result()
                    if cover.data is not None:
                        pending.add(decoders.submit(_decode, cover, layout, held))
                    else:
                        settled[cover.index] = cover
                placing = time.perf_counter()
                while next_index in settled:
                    cover = settled.pop(next_index)
                    cover.page = pages.place(cover.tile)
                    cover.tile = None
                    next_index += 1
                place_seconds += time.perf_counter() - placing
        except BaseException:
            # A bug or MemoryError: nothing more will be decoded, so wake the fetch threads
            # waiting for room and drop queued fetches, or leaving the pools would hang.
            fetchers.shutdown(wait=False, cancel_futures=True)
            for _ in range(fetch_workers):
                held.release()
            raise
        bytes_downloaded = downloader.bytes_downloaded
    placing = time.perf_counter()
    pages.finish_page()
    place_seconds += time.perf_counter() - placing
    outcomes = [
        TileOutcome(
            index=cover.index,
            source=source,
            ok=cover.code is None,
            error_code=cover.code,
            error=cover.error,
            bytes=cover.size,
            page=cover.page,
        )
        for cover, source in zip(covers, sources, strict=True)
    ]
    return CollageResult(
        pages=pages.encoded,
        outcomes=outcomes,
        download_seconds=sum(cover.fetch_seconds for cover in covers),
        render_seconds=sum(cover.decode_seconds for cover in covers) + place_seconds,
        bytes_downloaded=bytes_downloaded,
        wall_seconds=time.perf_counter() - started,
        thumbnail=pages.thumbnail,
    )
