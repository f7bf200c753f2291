"""Identify image formats by their magic bytes, never by URL or Content-Type."""

from __future__ import annotations

# How many leading bytes `sniff` needs to decide.
SNIFF_BYTES = 16

SUPPORTED_FORMATS = ("jpeg", "png", "webp", "gif")


def sniff(head: bytes) -> str | None:
    """Return 'jpeg', 'png', 'webp' or 'gif' for a supported image's first bytes, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None
