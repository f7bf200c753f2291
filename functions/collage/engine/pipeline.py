"""One creator's covers -> JPEG pages: download, decode and compose, overlapped.

`max_workers` fetch threads download (or read) covers; each fetched cover goes straight to a
decode thread (one per CPU; Pillow releases the GIL while decoding) and is turned into its
small tile, after which its bytes are dropped. Fetch threads never wait for decoding, so
decoding overlaps the next downloads; at most fetch + decode threads' worth of covers are held
as bytes at once. The calling thread places tiles in source order as soon as all earlier
covers are settled (paging encodes a page as soon as it is full).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from threading import Semaphore
from typing import Any

from PIL import Image

from collage.engine.fetch_policy import DownloadError, FetchPolicy
from collage.engine.paging import Pages
from collage.engine.render import CoverError, Layout, decode_tile


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

    def outcome(self, source: str) -> TileOutcome:
        return TileOutcome(
            index=self.index,
            source=source,
            ok=self.code is None,
            error_code=self.code,
            error=self.error,
            bytes=self.size,
            page=self.page,
        )


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


def _worker_counts(sources: Sequence[str], max_workers: int) -> tuple[int, int]:
    """(fetch threads, decode threads) for these sources."""
    fetch_workers = max(1, min(max_workers, len(sources)))
    if not any(is_url(source) for source in sources):
        fetch_workers = min(fetch_workers, cpu_count())  # local files: reading is decoding
    # Decoding is CPU work: more threads than CPUs only adds switching. Fetch threads never
    # wait for a decode, so a slow decode does not delay the next download.
    return fetch_workers, min(cpu_count(), fetch_workers)


class _SourceOrder:
    """Settled covers go on the pages in source order, each once all earlier ones are in."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.settled: dict[int, _Cover] = {}
        self.next_index = 0
        self.seconds = 0.0  # placing tiles and encoding pages

    def settle(self, cover: _Cover) -> None:
        self.settled[cover.index] = cover

    def place_ready(self) -> None:
        placing = time.perf_counter()
        while self.next_index in self.settled:
            cover = self.settled.pop(self.next_index)
            cover.page = self.pages.place(cover.tile)
            cover.tile = None
            self.next_index += 1
        self.seconds += time.perf_counter() - placing

    def finish(self) -> None:
        placing = time.perf_counter()
        self.pages.finish_page()
        self.seconds += time.perf_counter() - placing


class _Threads:
    """Fetch threads hand fetched bytes to decode threads; the caller places what settles."""

    def __init__(
        self, layout: Layout, max_bytes: int, fetch_workers: int, decode_workers: int
    ) -> None:
        self.layout = layout
        self.max_bytes = max_bytes
        self.fetch_workers = fetch_workers
        self.decode_workers = decode_workers

    def run(
        self, covers: list[_Cover], sources: list[str], downloader: Any, order: _SourceOrder
    ) -> None:
        # Room for the bytes of one cover per thread; a fetch waits for room (see _fetch).
        held = Semaphore(self.fetch_workers + self.decode_workers)
        with (
            ThreadPoolExecutor(self.fetch_workers, thread_name_prefix="fetch") as fetchers,
            ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as decoders,
        ):
            pending = {
                fetchers.submit(
                    _fetch, cover, source, downloader, self.layout, self.max_bytes, held
                )
                for cover, source in zip(covers, sources, strict=True)
            }
            try:
                self._settle_all(pending, decoders, held, order)
            except BaseException:
                # A bug or MemoryError: nothing more will be decoded, so wake the fetch threads
                # waiting for room and drop queued fetches, or leaving the pools would hang.
                fetchers.shutdown(wait=False, cancel_futures=True)
                for _ in range(self.fetch_workers):
                    held.release()
                raise

    def _settle_all(
        self,
        pending: set[Future[_Cover]],
        decoders: ThreadPoolExecutor,
        held: Semaphore,
        order: _SourceOrder,
    ) -> None:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                cover = future.result()
                if cover.data is not None:  # fetched, not yet decoded
                    pending.add(decoders.submit(_decode, cover, self.layout, held))
                else:
                    order.settle(cover)
            order.place_ready()


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
    order = _SourceOrder(Pages(layout, thumbnail_width))
    threads = _Threads(layout, policy.max_bytes, *_worker_counts(sources, max_workers))
    with _downloader_for(sources, policy, threads.fetch_workers, deadline) as downloader:
        threads.run(covers, sources, downloader, order)
        bytes_downloaded = downloader.bytes_downloaded
    order.finish()
    return CollageResult(
        pages=order.pages.encoded,
        outcomes=[cover.outcome(source) for cover, source in zip(covers, sources, strict=True)],
        download_seconds=sum(cover.fetch_seconds for cover in covers),
        render_seconds=sum(cover.decode_seconds for cover in covers) + order.seconds,
        bytes_downloaded=bytes_downloaded,
        wall_seconds=time.perf_counter() - started,
        thumbnail=order.pages.thumbnail,
    )
