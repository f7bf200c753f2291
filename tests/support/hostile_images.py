"""Cover images in every format a CDN may serve, hostile ones built byte by byte.

Everything is generated: Pillow writes what it can, pillow-heif's x265 encoder writes HEIC (a
dev dependency only: the deployed decoder, pi-heif, has no encoder), and what no encoder
writes is assembled here.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

RED, GREEN, BLUE = (230, 20, 20), (20, 200, 40), (30, 40, 220)
ORIENTATION = 0x0112
# The transpose that turns an upright picture into what a file with EXIF orientation n stores
# (the inverse of the one that makes it upright).
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def heic(image: Image.Image, *, exif: bytes | None = None, quality: int = 90) -> bytes:
    import pillow_heif

    picture = pillow_heif.from_pillow(image)
    if exif is not None:
        picture.info["exif"] = exif
    out = io.BytesIO()
    picture.save(out, quality=quality)
    return out.getvalue()


def exif_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def marked(size: tuple[int, int] = (216, 384)) -> Image.Image:
    """An upright blue picture with a red square in its top-left corner."""
    image = Image.new("RGB", size, BLUE)
    side = min(size) // 3
    image.paste(RED, (0, 0, side, side))
    return image


def stored_as(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a file with this EXIF orientation holds for the upright picture."""
    return upright.transpose(_STORED[orientation]) if orientation in _STORED else upright


def oriented(fmt: str, orientation: int, size: tuple[int, int] = (216, 384)) -> bytes:
    """The marked picture stored as `fmt` with an EXIF orientation (AVIF: as irot/imir)."""
    stored = stored_as(marked(size), orientation)
    exif = exif_orientation(orientation)
    if fmt == "HEIC":
        return heic(stored, exif=exif)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF") else {}
    return encode(stored, fmt, exif=exif, **options)


# --- PNG, chunk by chunk -------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(
    size: tuple[int, int],
    depth: int,
    colour_type: int,
    top: bytes,
    bottom: bytes,
    *,
    extra: bytes = b"",
) -> bytes:
    """A PNG whose top half repeats pixel `top` and bottom half `bottom` (raw samples);
    `extra` chunks (tRNS, ...) go between IHDR and IDAT."""
    width, height = size
    rows = [b"\0" + (top if y < height // 2 else bottom) * width for y in range(height)]
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + png_chunk(b"IEND", b"")
    )


def png_with_empty_chunks(count: int) -> bytes:
    """A small PNG with `count` empty ancillary chunks before its image data."""
    data = encode(Image.new("RGB", (64, 64), RED), "PNG")
    image_data = data.index(b"IDAT") - 4
    return data[:image_data] + png_chunk(b"zzZz", b"") * count + data[image_data:]


# --- JPEG, segment by segment --------------------------------------------------------------------


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """`jpeg` with one more marker segment right after its SOI."""
    return jpeg[:2] + struct.pack(">HH", marker, len(payload) + 2) + payload + jpeg[2:]


def jpeg_with_empty_segments(count: int) -> bytes:
    jpeg = encode(Image.new("RGB", (64, 64), RED), "JPEG")
    return jpeg[:2] + b"\xff\xe5\x00\x02" * count + jpeg[2:]


def _eob_run_scan(blocks: int) -> bytes:
    """A progressive AC scan of component 1 that codes every block as one end-of-band run: a
    few bytes, yet libjpeg visits each block of the image for it."""
    bits = ("0" + "1" * 14) * -(-blocks // 32767)  # EOBRUN symbol, 14 bits: a run of 32,767
    bits += "1" * (-len(bits) % 8)
    coded = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    return b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x01, 1, 63, 0) + coded


# A Huffman table (AC, id 1) with one code, '0', for the symbol 0xE0: an EOB run of 2^14+.
_EOB_TABLE = b"\xff\xc4" + struct.pack(">HB", 20, 0x11) + bytes([1] + [0] * 15) + b"\xe0"


def progressive_jpeg(size: tuple[int, int], colour: tuple[int, int, int] = RED) -> bytes:
    return encode(Image.new("RGB", size, colour), "JPEG", quality=90, progressive=True)


def with_extra_scans(jpeg: bytes, extra: int, size: tuple[int, int]) -> bytes:
    """A progressive JPEG with `extra` more scans before its EOI."""
    blocks = -(-size[0] // 8) * -(-size[1] // 8)
    return jpeg[:-2] + _EOB_TABLE + _eob_run_scan(blocks) * extra + jpeg[-2:]


def scan_count(jpeg: bytes) -> int:
    return jpeg.count(b"\xff\xda")


# --- EXIF and MPF directories whose entries all copy the same bytes ------------------------------


def directory_bomb(size: int, field_type: int = 3) -> bytes:
    """A little-endian TIFF block of `size` bytes: one directory of as many entries as fit,
    each pointing at nearly the whole block (Pillow copies each one out)."""
    unit = {3: 2, 7: 1}[field_type]
    count = min((size - 14) // 12, 65_000)
    entries = b"".join(
        struct.pack("<HHII", 0x100 + n, field_type, (size - 1) // unit, 1) for n in range(count)
    )
    block = b"II*\x00" + struct.pack("<IH", 8, count) + entries + b"\0\0\0\0"
    return block + bytes(size - len(block))


def avif_with_exif(exif: bytes, size: tuple[int, int] = (64, 64)) -> bytes:
    """An AVIF whose EXIF item holds `exif` verbatim. Pillow's AVIF writer parses the EXIF it
    is given, so a same-sized harmless block is written and the bytes swapped afterwards."""
    blank = b"II*\x00" + struct.pack("<IH", 8, 0) + b"\0\0\0\0"
    blank += b"\xa5" * (len(exif) - len(blank))
    data = encode(Image.new("RGB", size, RED), "AVIF", exif=b"Exif\0\0" + blank, quality=90)
    at = data.index(blank)
    return data[:at] + exif + data[at + len(exif) :]


# --- GIF, block by block -------------------------------------------------------------------------


def _gif_parts(size: tuple[int, int]) -> tuple[bytes, bytes, bytes]:
    """(header with colour table, red first frame, blue second frame) of a two-frame GIF; each
    frame is its Graphic Control Extension and its image."""
    frames = [Image.new("RGB", size, colour) for colour in (RED, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20)
    first = data.index(b"\x21\xf9")  # the first frame's Graphic Control Extension
    second = data.index(b"\x21\xf9", first + 1)
    return data[:first], data[first:second], data[second:-1]


def gif_frames(count: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A GIF of `count` frames: red, then blue ones (the second frame's bytes repeated)."""
    header, first, later = _gif_parts(size)
    return header + first + later * (count - 1) + b"\x3b"


def gif_with_comments(count: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A red GIF with `count` one-byte comment extensions before its first frame."""
    header, first, _ = _gif_parts(size)
    return header + b"\x21\xfe\x01x\x00" * count + first + b"\x3b"


# --- formats that are refused --------------------------------------------------------------------


def unsupported_images() -> dict[str, bytes]:
    """One image of each format that is recognised and refused, by sniff's name."""
    picture = Image.new("RGB", (32, 32), RED)
    return {
        "tiff": encode(picture, "TIFF"),
        "bmp": encode(picture, "BMP"),
        "ico": encode(picture, "ICO"),
        "jp2": encode(picture, "JPEG2000"),
        "svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="32"/>',
        "jxl": b"\xff\x0a\xfa\x7f\x01\x90\x08\x06\x01" + bytes(40),  # codestream header
        "psd": b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x20\x00\x00\x00\x20" + bytes(40),
        "heif": b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1jpeg" + bytes(40),
    }
