"""Which encoding a text file is in, and its bytes as UTF-8 whatever it was written in.

UTF-8, with or without a BOM, is read as it is; UTF-16 with a BOM is transcoded. Without a
BOM, `file_encoding` looks at the first ENCODING_SAMPLE bytes: UTF-16 shows as NUL bytes
between the ASCII letters of the first line (a CSV header), and bytes that are not UTF-8 with
no UTF-8 character among them are Windows-1252 (Excel's "CSV" on Western systems; Latin-1 is a
part of it). Invalid bytes in a UTF-8 file are left for the reader to find.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from itertools import chain
from typing import IO

ENCODING_SAMPLE = 1 << 16  # bytes `file_encoding` looks at
GUESSED_ENCODINGS = {
    "utf-16-le": "UTF-16 (little-endian)",
    "utf-16-be": "UTF-16 (big-endian)",
    "cp1252": "Windows-1252",
}
# A UTF-8 character of 2-4 bytes: one in the sample means the file is UTF-8 with bad bytes.
_UTF8_CHARACTER = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def file_encoding(head: bytes) -> str:
    """The codec a file is read with, from its first ENCODING_SAMPLE bytes: "utf-8-sig" (a
    UTF-8 BOM), "utf-16" (a UTF-16 BOM), a guess from GUESSED_ENCODINGS, or "utf-8"."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    start = head[:64]  # the first line is ASCII: in UTF-16 every other byte is NUL
    for encoding, nul in (("utf-16-le", 1), ("utf-16-be", 0)):
        nuls = start[nul::2].count(0)
        if len(start) >= 8 and nuls > len(start) // 4 and 0 not in start[1 - nul :: 2]:
            return encoding
    return "cp1252" if _not_utf8(head) else "utf-8"


def _not_utf8(head: bytes) -> bool:
    """Bytes that are not UTF-8 with no UTF-8 character among them (one the sample cut short
    does not count)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.reason != "unexpected end of data" and not _UTF8_CHARACTER.search(head)
    return False


def utf8_pieces(raw: IO[bytes], head: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes as UTF-8, `head` (its start, already read) first: as they are, without
    a BOM, or transcoded from file_encoding(head), undecodable bytes as U+FFFD."""
    pieces, encoding = chain([head], iter(lambda: raw.read(size), b"")), file_encoding(head)
    if encoding not in ("utf-8", "utf-8-sig"):
        return (text.encode() for text in codecs.iterdecode(pieces, encoding, "replace"))
    return chain([next(pieces).removeprefix(codecs.BOM_UTF8)], pieces)
