"""Count a cover's container parts before Pillow parses them, so hostile files cost little.

Pillow walks a JPEG's marker segments, a PNG's chunks and a GIF's extension blocks in Python,
one part at a time, and libjpeg decodes every scan of a progressive JPEG across the whole
image. A file made of many small parts costs seconds (measured on 2 cores: 12 MB of empty PNG
chunks 5 s; 10 MB of empty JPEG segments 2.6 s; 2 MB of GIF comments, which Pillow joins
quadratically, 4.5 s; 10,000 scans of 13 bytes each in a 1080x1920 progressive JPEG 1.6 s,
~0.16 ms a scan, ~5 ms at 50 megapixels). These walks refuse a cover with far more parts than
real images carry; a real cover's walk takes microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

Problem = tuple[str, str]  # (code, reason), as CoverError takes them

# A camera JPEG has < 30 segments before its image data; a 16 MB ICC profile adds 256.
MAX_JPEG_SEGMENTS = 1_000
# Stray bytes between a JPEG's segments or a GIF's blocks, which Pillow skips one at a time.
MAX_STRAY_BYTES = 1 << 20
# Encoders write about 10 scans (libjpeg's default progression has 10, mozjpeg's about as many).
MAX_SCANS = 100
# 20 MB of IDAT in libpng's 8 KiB chunks is 2,560 chunks.
MAX_PNG_CHUNKS = 10_000
# Extensions and their data sub-blocks before a GIF's first frame (a 300 KB XMP packet fits).
MAX_GIF_BLOCKS = 4_096

# A marker: 0xFF (fill bytes allowed) and a code. In a scan's coded data 0xFF00 is a stuffed
# byte and 0xFFD0-D7 are restart markers, so neither ends the scan.
_MARKER = re.compile(rb"\xff+([^\x00\xff\xd0-\xd7])")
_STANDALONE = frozenset({0x01, 0xD8, 0xD9})  # markers without a length field
_SOS, _EOI = 0xDA, 0xD9
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})  # start-of-frame codes of progressive JPEGs
_APNG_FIRST_FRAME = frozenset({b"acTL", b"IDAT"})  # animation control, then the first image
_GIF_BLOCK = re.compile(rb"[!,;]")  # an extension, an image (a frame) or the trailer


def check(kind: str, data: bytes) -> Problem | None:
    """Why a cover of this (supported) kind is refused before decoding, or None."""
    walk = _WALKS.get(kind)
    return walk(data) if walk is not None else None


def _segments(data: bytes, pos: int) -> Iterator[tuple[int, int, int]]:
    """(code, where the walk goes on, stray bytes before the marker) of each JPEG marker.

    A segment is stepped over by its length; after a scan's header, the search for the next
    marker steps over the scan's coded data."""
    while (found := _MARKER.search(data, pos)) is not None:
        code, end = found[1][0], found.end()
        if code not in _STANDALONE:
            end += max(2, int.from_bytes(data[end : end + 2], "big"))
        yield code, end, found.start() - pos
        pos = end


def _jpeg(data: bytes) -> Problem | None:
    segments = stray = 0
    progressive = False
    for code, end, skipped in _segments(data, 2):
        segments, stray = segments + 1, stray + skipped
        problem = _segment_limits(segments, stray)
        if problem is not None:
            return problem
        progressive |= code in _PROGRESSIVE  # the frame header comes before the first scan
        if code == _SOS:
            return _scans(data, end) if progressive else None
    return None


def _segment_limits(segments: int, stray: int) -> Problem | None:
    if segments > MAX_JPEG_SEGMENTS:
        return "too_many_chunks", (
            f"JPEG with more than {MAX_JPEG_SEGMENTS:,} marker segments before its image data"
        )
    if stray > MAX_STRAY_BYTES:
        return "corrupt_image", (
            f"JPEG with more than {MAX_STRAY_BYTES:,} stray bytes between its segments"
        )
    return None


def _scans(data: bytes, after_first: int) -> Problem | None:
    """Scans of a progressive JPEG. Counting 0xFFDA is a quick upper bound (they may also sit
    in data after the image's end, such as a motion photo's video), walked exactly past it."""
    if 1 + data.count(b"\xff\xda", after_first) <= MAX_SCANS:
        return None
    scans = 1
    for code, _, _ in _segments(data, after_first):
        if code == _EOI:
            break
        scans += code == _SOS
        if scans > MAX_SCANS:
            return "too_many_scans", f"progressive JPEG with more than {MAX_SCANS} scans"
    return None


def _png(data: bytes) -> Problem | None:
    """Chunks up to where Pillow stops reading: the end, or an APNG's second frame."""
    seen: set[bytes] = set()
    for chunks, kind in enumerate(_png_chunks(data), 1):
        if _png_read_ends(kind, seen):
            return None
        if chunks > MAX_PNG_CHUNKS:
            return "too_many_chunks", f"PNG with more than {MAX_PNG_CHUNKS:,} chunks"
        seen.add(kind)
    return None


def _png_chunks(data: bytes) -> Iterator[bytes]:
    """The type of each chunk after the signature, stepping over each by its length."""
    pos = 8
    while pos + 8 <= len(data):
        yield data[pos + 4 : pos + 8]
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")


def _png_read_ends(kind: bytes, seen: set[bytes]) -> bool:
    """Pillow reads no further: the end, or an APNG's frame control after its first image."""
    return kind == b"IEND" or (kind == b"fcTL" and seen >= _APNG_FIRST_FRAME)


def _gif(data: bytes) -> Problem | None:
    """Blocks before the first frame (no later frame is read): Pillow reads them, and any
    stray byte between them one at a time, in Python, and joins comments quadratically."""
    pos = _gif_blocks_start(data)
    blocks = stray = 0
    while (found := _GIF_BLOCK.search(data, pos)) is not None:
        stray += found.start() - pos
        if stray > MAX_STRAY_BYTES:
            return "corrupt_image", f"GIF with more than {MAX_STRAY_BYTES:,} stray bytes"
        if found[0] != b"!":  # the first frame, or the end
            return None
        pos, blocks = _sub_blocks(data, found.end() + 1, blocks)
        if blocks > MAX_GIF_BLOCKS:
            return "too_many_chunks", (
                f"GIF with more than {MAX_GIF_BLOCKS:,} extension blocks before its first frame"
            )
    return None


def _gif_blocks_start(data: bytes) -> int:
    """Where the blocks begin: after the header, and the global colour table if there is one."""
    flags = data[10] if len(data) > 10 else 0
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def _sub_blocks(data: bytes, pos: int, blocks: int) -> tuple[int, int]:
    """Past an extension's data sub-blocks, up to its empty one, each counted; the walk stops
    once the count is over the limit."""
    while blocks <= MAX_GIF_BLOCKS:
        blocks += 1
        size = data[pos] if pos < len(data) else 0
        pos += size + 1
        if not size:
            break
    return pos, blocks


_WALKS: dict[str, Callable[[bytes], Problem | None]] = {"jpeg": _jpeg, "png": _png, "gif": _gif}
