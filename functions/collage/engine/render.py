"""Turn cover bytes into tiles and tiles into JPEG pages.

Speed comes from decoding as little as possible: a JPEG is decoded with `Image.draft`, so
libjpeg scales it down by 1/2, 1/4 or 1/8 in the DCT domain to the smallest size still at least
as large as the tile, and only that small image is then resized (one LANCZOS pass, crop box
included) to the exact tile. EXIF rotation is applied to the small image, not the full one.
Formats without draft (PNG, WebP, GIF, AVIF, HEIC) are reduced by integer factors first
(`reducing_gap`). An animated cover shows its first frame; no later frame is read.

A cover's format comes from its first bytes (formats), never from its URL. HEIC is decoded by
pi-heif (libheif with libde265), imported with the first HEIC cover. Pillow's reading of EXIF
and MPF blocks is bounded (ifd_guard). Before Pillow parses a cover, its container parts are
counted (structure).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

from PIL import Image, ImageColor, ImageMath, features

from collage.config import ProcessingConfig
from collage.engine import formats, ifd_guard, structure

ifd_guard.install()

_PIL_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "avif": "AVIF",
    "heic": "HEIF",  # pi-heif's plugin
}
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Covers without draft (PNG, WebP, GIF) are first reduced by an integer factor (box average)
# to within 2x of the tile; the LANCZOS pass after it hides the difference and is far cheaper.
_REDUCING_GAP = 2.0
# The last step from a drafted JPEG is a mild downscale (by less than 2x). Hamming costs under
# half of LANCZOS there (1.1 vs 2.6 ms a tile) at ~43 dB PSNR against a full-size LANCZOS
# reference; LANCZOS stays for upscaling and for the larger steps of the other formats.
_MILD = Image.Resampling.HAMMING
_STRONG = Image.Resampling.LANCZOS
# libjpeg decodes at 1/2, 1/4 or 1/8 scale only. A JPEG may be decoded down to 80% of the
# size it needs and the rest made up by a mild (<= 1.25x) BICUBIC upscale: a 720x1280 cover
# then decodes at 180x320 instead of 360x640 (~30% less decode time) at ~41 dB PSNR against
# a full-size LANCZOS reference on the benchmark's covers.
DRAFT_SLACK = 0.8
_UPSCALE = Image.Resampling.BICUBIC


class CoverError(Exception):
    """A cover's bytes cannot become a tile. `code` is stable (for reports)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Layout:
    rows: int = 5
    cols: int = 7
    tile_width: int = 216
    tile_height: int = 384
    fit: str = "crop"  # or "contain"
    background: tuple[int, int, int] = (0, 0, 0)
    quality: int = 95
    on_failure: str = "placeholder"  # or "close_up"
    max_pixels: int = 50_000_000  # decompression-bomb guard, checked from the header

    @classmethod
    def from_config(cls, config: ProcessingConfig) -> Layout:
        return cls(
            rows=config.rows,
            cols=config.cols,
            tile_width=config.tile_width,
            tile_height=config.tile_height,
            fit=config.fit,
            background=ImageColor.getrgb(config.background)[:3],
            quality=config.quality,
            on_failure=config.on_failure,
        )

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    @property
    def canvas_size(self) -> tuple[int, int]:
        return (self.cols * self.tile_width, self.rows * self.tile_height)

    def cell_box(self, slot: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of cell `slot` (row-major) on its page."""
        row, col = divmod(slot % self.cells, self.cols)
        left, top = col * self.tile_width, row * self.tile_height
        return (left, top, left + self.tile_width, top + self.tile_height)


# --- one cover -> one tile ----------------------------------------------------------------------


def decode_tile(data: bytes, layout: Layout) -> Image.Image:
    """The tile for one cover: exactly the tile size ('crop'), or fitted inside it ('contain').

    Raises CoverError: 'not_an_image', 'unsupported_format', 'too_many_pixels',
    'too_many_scans', 'too_many_chunks', 'corrupt_image'.
    """
    kind = _decodable(data)
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image:
            return _decode_open(image, kind, layout)
    except CoverError:
        raise
    except Image.DecompressionBombError as error:
        raise CoverError("too_many_pixels", str(error)) from None
    except MemoryError:
        raise
    except Exception as error:  # untrusted bytes: Pillow raises many kinds on bad data
        raise CoverError("corrupt_image", f"{kind} does not decode: {error}"[:300]) from None


def _decodable(data: bytes) -> str:
    """The cover's format, when its bytes are worth handing to a decoder; else CoverError."""
    kind = formats.sniff(data[: formats.SNIFF_BYTES])
    if kind is None or kind not in formats.SUPPORTED_FORMATS:
        raise CoverError(*formats.refusal(kind))
    problem = _missing_decoder(kind) or structure.check(kind, data)
    if problem is not None:
        raise CoverError(*problem)
    return kind


def _missing_decoder(kind: str) -> tuple[str, str] | None:
    if kind == "heic":
        present = _heif_plugin()
    else:
        present = kind not in ("webp", "avif") or bool(features.check(kind))
    if present:
        return None
    return "unsupported_format", f"this build cannot decode {formats.NAMES[kind]}"


@functools.cache
def _heif_plugin() -> bool:
    """pi-heif's HEIF plugin for Pillow, registered with the first HEIC cover (~50 ms)."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True


def _decode_open(image: Image.Image, kind: str, layout: Layout) -> Image.Image:
    width, height = image.size  # from the header: nothing decoded yet
    if width * height > layout.max_pixels:
        raise CoverError(
            "too_many_pixels", f"{width}x{height} exceeds the {layout.max_pixels} pixel limit"
        )
    orientation = 1
    if kind == "jpeg":
        orientation = _orientation(image)
        swap = orientation in _SWAPS_SIDES
        shape = (height, width) if swap else (width, height)
        target = _scaled_size(shape, layout)
        # draft keeps both sides >= the requested size, in the file's (unrotated) orientation.
        wanted = (math.ceil(target[0] * DRAFT_SLACK), math.ceil(target[1] * DRAFT_SLACK))
        image.draft("RGB", (wanted[1], wanted[0]) if swap else wanted)
    image.load()  # a GIF or animated WebP loads its first frame
    if kind != "jpeg":
        orientation = _orientation(image)
    upright = _normalise_mode(image)
    if orientation in _TRANSPOSE:
        # After draft this is the small image (a few hundred pixels a side): cheap to rotate.
        upright = upright.transpose(_TRANSPOSE[orientation])
    tile = _fit(upright, layout)
    if tile.mode == "RGBA":
        flat = Image.new("RGB", tile.size, layout.background)
        flat.paste(tile, mask=tile.getchannel("A"))
        tile = flat
    return tile


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block must not cost us the picture
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _scaled_size(size: tuple[int, int], layout: Layout) -> tuple[int, int]:
    """The size the whole upright image is scaled to: covering the tile, or inside it."""
    width, height = size
    ratios = (layout.tile_width / width, layout.tile_height / height)
    scale = max(ratios) if layout.fit == "crop" else min(ratios)
    return (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))


def _normalise_mode(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the cover has transparency (composited after resizing, cheaper)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        image = _eight_bit_grey(image)
    key = image.info.get("transparency")
    if isinstance(key, tuple) and max(key) > 255:
        # A 16-bit PNG's transparent colour; Pillow keeps the high byte of each sample.
        image.info["transparency"] = tuple(value >> 8 for value in key)
    if image.has_transparency_data:  # RGBA, LA, PA, or a transparent colour or palette entry
        return image.convert("RGBA")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")  # L, P, CMYK (Pillow undoes Adobe's inverted CMYK), 1, F


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    """16-bit greyscale as 'L', or 'LA' when one grey value is marked transparent."""
    wide = image.convert("I")
    grey = wide.point(lambda value: value / 257).convert("L")
    key = grey.info.pop("transparency", None)
    if isinstance(key, int):
        opaque = ImageMath.lambda_eval(lambda args: (args["wide"] != key) * 255, wide=wide)
        grey.putalpha(opaque.convert("L"))
    return grey


def _fit(image: Image.Image, layout: Layout) -> Image.Image:
    """Resize (and centre-crop for 'crop') `image` in one resampling pass."""
    width, height = image.size
    tile = (layout.tile_width, layout.tile_height)
    if layout.fit == "crop":
        if image.size == tile:
            return image
        scale = max(tile[0] / width, tile[1] / height)
        # The side that sets the scale spans the whole image; min() keeps float rounding
        # (1920.0000000002) from asking Pillow for a box outside it.
        crop_w, crop_h = min(tile[0] / scale, width), min(tile[1] / scale, height)
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
        size = tile
    else:
        size = _scaled_size((width, height), layout)
        size = (min(size[0], tile[0]), min(size[1], tile[1]))
        if image.size == size:
            return image
        scale = min(tile[0] / width, tile[1] / height)
        box = None
    return image.resize(size, _resampling(scale), box, _REDUCING_GAP)


def _resampling(scale: float) -> Image.Resampling:
    """The filter for one resize by `scale`: cheap where the step is small, LANCZOS otherwise."""
    if 1 < scale <= 1 / DRAFT_SLACK + 1e-9:
        return _UPSCALE  # the make-up step after a JPEG decoded below the tile size
    return _MILD if 0.5 <= scale <= 1 else _STRONG


# --- tiles -> pages -------------------------------------------------------------------------------


def placeholder_colours(background: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
    """(fill, cross) of the failed-cover tile: dark grey, or light grey on a dark-grey page."""
    fill, cross = (58, 58, 58), (140, 140, 140)
    if max(abs(a - b) for a, b in zip(background, fill, strict=True)) < 40:
        fill, cross = (176, 176, 176), (96, 96, 96)
    return fill, cross


def placeholder_tile(layout: Layout) -> Image.Image:
    """A grey tile with a cross from corner to corner: clearly 'a cover is missing here'."""
    from PIL import ImageDraw  # with its fonts, only when a cover has failed

    fill, cross = placeholder_colours(layout.background)
    width, height = layout.tile_width, layout.tile_height
    tile = Image.new("RGB", (width, height), fill)
    draw = ImageDraw.Draw(tile)
    line = max(2, min(width, height) // 48)
    inset = line * 3
    draw.line((inset, inset, width - inset, height - inset), fill=cross, width=line)
    draw.line((inset, height - inset, width - inset, inset), fill=cross, width=line)
    return tile


def paste_tile(canvas: Image.Image, tile: Image.Image, slot: int, layout: Layout) -> None:
    """Paste `tile` centred in cell `slot` (a 'contain' tile leaves background around it)."""
    left, top, right, bottom = layout.cell_box(slot)
    x = left + (right - left - tile.width) // 2
    y = top + (bottom - top - tile.height) // 2
    canvas.paste(tile, (x, y))


def new_canvas(layout: Layout) -> Image.Image:
    return Image.new("RGB", layout.canvas_size, layout.background)


def encode_jpeg(canvas: Image.Image, quality: int) -> bytes:
    """Baseline JPEG, not optimised: optimize/progressive cost 2-5x the encode time for ~5%."""
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=quality)
    return out.getvalue()


THUMBNAIL_QUALITY = 75  # a glance, not a copy: ~5-10 KB for a 5x7 page at 216 px wide


def encode_thumbnail(canvas: Image.Image, width: int) -> bytes:
    """The canvas shrunk by a whole factor to at most `width` pixels wide, as a small JPEG.

    Image.reduce averages whole blocks of pixels: a box filter, a few milliseconds on a
    1512x1920 page, where a LANCZOS resize of the same page costs ~10x more for no visible
    gain at this size.
    """
    factor = max(1, -(-canvas.width // width))  # ceil: never wider than asked
    small = canvas.reduce(factor) if factor > 1 else canvas
    out = io.BytesIO()
    # optimize: Huffman tables fitted to this small image, ~10% smaller for well under 1 ms.
    small.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()
