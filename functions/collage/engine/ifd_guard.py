"""Bound what Pillow may copy when it reads an EXIF or MPF directory.

Pillow reads such a directory (a TIFF IFD) by copying out every entry's data, and entries may
all point at the same bytes: one block then expands to gigabytes. Measured with Pillow 12.2: a
65 KB JPEG whose MPF block lists 5,400 entries of 65 KB each took 18 s and 3.1 GB to open (the
MPF block is read by `Image.open` itself, as is an AVIF's EXIF), and a PNG with a 3 MB EXIF
block exhausted memory in `getexif()`. The entries of a real directory do not overlap, so they
copy out less than the block holds; a directory that would copy more than its block's size
plus 1 MiB is read as an empty one (as Pillow reads a directory it cannot parse), and the cover
still renders. Pillow reads every directory with one class, so `install()` bounds them all
(the JPEG, PNG, WebP and AVIF plugins', `getexif()`'s) by wrapping its `load`, process-wide.
"""

from __future__ import annotations

import io
import struct
from typing import IO

from PIL import TiffImagePlugin

SLACK = 1 << 20
_Directory = TiffImagePlugin.ImageFileDirectory_v2
_pillow_load = _Directory.load
# Bytes per value of each TIFF field type Pillow reads (others it skips).
_UNIT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
_EMPTY = bytes(16)  # an entry count of 0 and no next directory, classic or BigTIFF


def copied_bytes(directory: _Directory, fp: IO[bytes]) -> tuple[int, int]:
    """(What Pillow's `load` would copy out for the directory at `fp`'s position, `fp`'s size).

    Like Pillow, it stops at the first entry whose data runs past the end; `fp` is left where
    it was."""
    start = fp.tell()
    length = fp.seek(0, io.SEEK_END)
    fp.seek(start)
    try:
        return _entries_size(directory, fp, length), length
    finally:
        fp.seek(start)


def _entries_size(directory: _Directory, fp: IO[bytes], length: int) -> int:
    endian = "<" if directory.prefix == b"II" else ">"
    big = getattr(directory, "_bigtiff", False)
    count_format, entry_format, inline = ("Q", "HHQ8s", 8) if big else ("H", "HHL4s", 4)
    head = fp.read(struct.calcsize(count_format))
    if len(head) < struct.calcsize(count_format):
        return 0
    (count,) = struct.unpack(endian + count_format, head)
    entry = struct.Struct(endian + entry_format)
    table = fp.read(min(count, length // entry.size) * entry.size)
    table = table[: len(table) // entry.size * entry.size]  # a table cut short by the end
    pointer = struct.Struct(endian + ("Q" if big else "L"))
    total = 0
    for _tag, kind, values, field in entry.iter_unpack(table):
        size = values * _UNIT.get(kind, 0)
        if size <= inline:
            continue
        (offset,) = pointer.unpack(field)
        if offset + size > length:
            break
        total += size
    return total


def _bounded_load(self: _Directory, fp: IO[bytes]) -> None:
    copied, length = copied_bytes(self, fp)
    _pillow_load(self, fp if copied <= length + SLACK else io.BytesIO(_EMPTY))


def install() -> None:
    """Send every directory Pillow reads through the bound (idempotent)."""
    _Directory.load = _bounded_load  # type: ignore[method-assign]
