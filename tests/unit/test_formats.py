"""Formats are told by their first bytes: the supported ones, and the refused ones by name."""

from __future__ import annotations

import pytest
from PIL import Image

from collage.engine.formats import NAMES, SNIFF_BYTES, SUPPORTED_FORMATS, refusal, sniff
from tests.support.hostile_images import RED, encode, heic, unsupported_images

PICTURE = Image.new("RGB", (32, 32), RED)


def head(data: bytes) -> bytes:
    return data[:SNIFF_BYTES]


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF"), ("avif", "AVIF")],
)
def test_supported_formats_written_by_pillow(kind: str, fmt: str) -> None:
    assert sniff(head(encode(PICTURE, fmt))) == kind


def test_heic_written_by_libheif() -> None:
    data = heic(PICTURE)
    assert data[4:12] == b"ftypheic"
    assert sniff(head(data)) == "heic"


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0\0\0\x08meta"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (ftyp(b"avif", b"mif1", b"miaf"), "avif"),
        (ftyp(b"avis", b"msf1"), "avif"),  # animated AVIF
        (ftyp(b"mif1", b"miaf", b"avif"), "avif"),  # the codec told by a compatible brand
        (ftyp(b"heic", b"mif1"), "heic"),  # an iPhone photo
        (ftyp(b"mif1", b"heic"), "heic"),
        (ftyp(b"heix", b"mif1"), "heic"),  # 10-bit
        (ftyp(b"msf1", b"hevc", b"heic"), "heic"),
        (ftyp(b"mif1", b"jpeg"), "heif"),  # HEIF holding a JPEG: no HEVC to decode
        (ftyp(b"mif1", b"avc1"), "heif"),
        (ftyp(b"isom", b"iso2", b"mp41"), None),  # an MP4 video
        (ftyp(b"qt  "), None),  # QuickTime
        (ftyp(b"crx ", b"isom"), None),  # a Canon raw file
        (b"\0\0\0\x20ftypmif1", "heif"),  # cut off before any codec brand: HEIF, codec unknown
    ],
)
def test_iso_bmff_by_brands_never_by_name(data: bytes, kind: str | None) -> None:
    assert sniff(data) == kind


def test_brands_beyond_the_ftyp_box_are_not_read() -> None:
    # The box says it holds only its major brand: "avif" after it belongs to the next box.
    data = b"\0\0\0\x10ftypmif1\0\0\0\0" + b"\0\0\0\x0cavif"
    assert sniff(data) == "heif"


@pytest.mark.parametrize("kind", sorted(unsupported_images()))
def test_refused_formats_are_named(kind: str) -> None:
    data = unsupported_images()[kind]
    assert sniff(head(data)) == kind
    code, reason = refusal(kind)
    assert code == "unsupported_format" and reason.startswith(NAMES[kind])
    assert "JPEG, PNG, WebP, GIF, AVIF, HEIC" in reason


@pytest.mark.parametrize(
    "data",
    [
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\xef\xbb\xbf  \n<SVG viewBox='0 0 1 1'/>",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- made by hand -->\n<svg/>',
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<svg/>',
    ],
)
def test_svg_spellings(data: bytes) -> None:
    assert sniff(head(data)) == "svg"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><body>Not found</body></html>",
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>',
        b"BMW 320i for sale, one careful owner",  # "BM" but no BMP header
        b"\x00\x00\x01\x00\x00\x00 not an icon",  # an icon file lists at least one image
        b"%PDF-1.7\n",
        b"qoif\x00\x00\x00\x20",
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
    ],
)
def test_anything_else_is_no_image(data: bytes) -> None:
    assert sniff(head(data)) is None
    assert refusal(None)[0] == "not_an_image"


def test_every_name_is_listed() -> None:
    assert set(SUPPORTED_FORMATS) <= set(NAMES)
    assert set(unsupported_images()) == set(NAMES) - set(SUPPORTED_FORMATS)
