"""Identify image formats by their first bytes, never by URL or Content-Type."""

from __future__ import annotations

from collections.abc import Callable

# How many leading bytes `sniff` looks at: room for an ISO-BMFF `ftyp` box's brands and for an
# SVG's XML prolog before its `<svg` tag.
SNIFF_BYTES = 256

SUPPORTED_FORMATS = ("jpeg", "png", "webp", "gif", "avif", "heic")

# Every format `sniff` names, as a person would; the ones not in SUPPORTED_FORMATS are
# recognised only to say what was served.
NAMES = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WebP",
    "gif": "GIF",
    "avif": "AVIF",
    "heic": "HEIC",
    "heif": "HEIF (not HEVC-coded)",
    "tiff": "TIFF",
    "bmp": "BMP",
    "ico": "ICO",
    "svg": "SVG",
    "jxl": "JPEG XL",
    "jp2": "JPEG 2000",
    "psd": "Photoshop (PSD)",
}
SUPPORTED_NAMES = ", ".join(NAMES[kind] for kind in SUPPORTED_FORMATS)

# ftyp brands that name the codec: AVIF (still or sequence) and HEIC (HEVC-coded HEIF).
_BRAND_KINDS = {
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"heim": "heic",
    b"heis": "heic",
}
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})  # HEIF, codec named by other brands
_PREFIXES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\xff\x0a", "jxl"),  # bare codestream
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xff\x4f\xff\x51", "jp2"),  # bare codestream
    (b"8BPS", "psd"),
)
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff(head: bytes) -> str | None:
    """The format of an image from its first bytes (a key of NAMES), else None."""
    for recognise in _RECOGNISERS:
        if kind := recognise(head):
            return kind
    return None


def refusal(kind: str | None) -> tuple[str, str]:
    """(code, reason) for a cover that is not decoded: no known format (None), or unsupported."""
    if kind is None:
        return "not_an_image", f"not an image in a supported format ({SUPPORTED_NAMES})"
    return "unsupported_format", f"{NAMES[kind]} is not a supported format ({SUPPORTED_NAMES})"


def _magic(head: bytes) -> str | None:
    """The formats a fixed prefix tells."""
    for prefix, kind in _PREFIXES:
        if head.startswith(prefix):
            return kind
    return None


def _webp(head: bytes) -> str | None:
    return "webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def _iso_bmff(head: bytes) -> str | None:
    """AVIF or HEIC from an ISO-BMFF `ftyp` box: its major brand, then its compatible ones."""
    if head[4:8] != b"ftyp":
        return None
    brands = _ftyp_brands(head)
    for brand in brands:
        if brand in _BRAND_KINDS:
            return _BRAND_KINDS[brand]
    # A HEIF image whose codec the decoder lacks; any other ftyp (MP4, QuickTime) is a video.
    return "heif" if not _HEIF_BRANDS.isdisjoint(brands) else None


def _ftyp_brands(head: bytes) -> list[bytes]:
    """The major brand, then the compatible brands (after the minor version), in box order."""
    end = min(int.from_bytes(head[:4], "big"), len(head))
    return [head[8:12], *(head[at : at + 4] for at in range(16, end - 3, 4))]


def _small_formats(head: bytes) -> str | None:
    """BMP and ICO/CUR: two- and four-byte magics, so their headers are checked too."""
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] != b"\x00\x00":
        return "ico"
    return None


def _svg(head: bytes) -> str | None:
    """An SVG document: `<svg` first, or after an XML prolog, comment or doctype."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith(b"<svg"):
        return "svg"
    if text.startswith((b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in text:
        return "svg"
    return None


# In this order: a fixed prefix first, the cheap checks before the SVG text search.
_RECOGNISERS: tuple[Callable[[bytes], str | None], ...] = (
    _magic,
    _webp,
    _iso_bmff,
    _small_formats,
    _svg,
)
