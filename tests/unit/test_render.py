"""decode_tile and the page helpers: every format and mode, checked on pixels."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from collage.config import ProcessingConfig
from collage.engine.render import (
    CoverError,
    Layout,
    decode_tile,
    encode_jpeg,
    new_canvas,
    paste_tile,
    placeholder_colours,
    placeholder_tile,
)

RED, GREEN, BLUE = (230, 20, 20), (20, 200, 40), (30, 40, 220)
LAYOUT = Layout()  # 216x384 tiles, crop
TOLERANCE = 12  # JPEG round trips move flat colours by a few levels


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = TOLERANCE) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def halves(size: tuple[int, int], first, second, *, vertical: bool = False) -> Image.Image:
    """Left/right halves (or top/bottom with vertical=True) in two colours."""
    image = Image.new("RGB", size, first)
    width, height = size
    box = (0, height // 2, width, height) if vertical else (width // 2, 0, width, height)
    image.paste(second, box)
    return image


def jpeg_with_orientation(image: Image.Image, orientation: int, **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes(), **options)


def test_layout_from_config_and_geometry() -> None:
    config = ProcessingConfig(rows=2, cols=3, tile_width=100, tile_height=50, background="#102030")
    layout = Layout.from_config(config)
    assert layout.background == (16, 32, 48)
    assert layout.canvas_size == (300, 100)
    assert layout.cells == 6
    assert layout.cell_box(0) == (0, 0, 100, 50)
    assert layout.cell_box(4) == (100, 50, 200, 100)
    assert layout.cell_box(7) == (100, 0, 200, 50)  # slot 7 is cell 1 of the next page


def test_jpeg_is_scaled_to_the_exact_tile() -> None:
    tile = decode_tile(encode(Image.new("RGB", (1080, 1920), GREEN), "JPEG"), LAYOUT)
    assert tile.size == (216, 384) and tile.mode == "RGB"
    assert close(tile.getpixel((108, 192)), GREEN)


def test_every_tile_size_near_the_cover_shape_crops_to_the_tile() -> None:
    """Where the tile's shape is within rounding of the cover's, the crop box's float sides
    once came out a hair larger than the image (640x1138 of 1080x1920: corrupt_image)."""
    cover = encode(Image.new("RGB", (90, 160), GREEN), "PNG")
    for width in range(16, 250):
        height = round(width * 16 / 9)
        for tile_size in ((width, height - 1), (width, height), (width, height + 1)):
            layout = Layout(tile_width=tile_size[0], tile_height=tile_size[1])
            assert decode_tile(cover, layout).size == tile_size


@pytest.mark.parametrize("progressive", [False, True])
def test_baseline_and_progressive_jpeg_keep_the_picture(progressive: bool) -> None:
    data = encode(halves((1080, 1920), RED, BLUE, vertical=True), "JPEG", progressive=progressive)
    tile = decode_tile(data, LAYOUT)
    assert close(tile.getpixel((108, 40)), RED)
    assert close(tile.getpixel((108, 340)), BLUE)


@pytest.mark.parametrize(
    ("orientation", "top", "bottom"),
    [(6, RED, BLUE), (8, BLUE, RED)],  # stored landscape, left half red: 6 turns it clockwise
)
def test_exif_quarter_turns_are_applied(orientation: int, top, bottom) -> None:
    data = jpeg_with_orientation(halves((1920, 1080), RED, BLUE), orientation)
    tile = decode_tile(data, LAYOUT)
    assert tile.size == (216, 384)
    assert close(tile.getpixel((108, 30)), top)
    assert close(tile.getpixel((108, 354)), bottom)
    # The upright picture is portrait, so it fills the portrait tile across: no side cropped.
    assert close(tile.getpixel((2, 30)), top) and close(tile.getpixel((213, 354)), bottom)


def test_exif_half_turn_is_applied() -> None:
    data = jpeg_with_orientation(halves((1080, 1920), RED, BLUE, vertical=True), 3)
    tile = decode_tile(data, LAYOUT)
    assert close(tile.getpixel((108, 30)), BLUE)
    assert close(tile.getpixel((108, 354)), RED)


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (540, 960), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    tile = decode_tile(data, LAYOUT)
    assert tile.mode == "RGB"
    assert close(tile.getpixel((108, 192)), (255, 0, 0))


def test_png_alpha_is_composited_on_the_background() -> None:
    image = Image.new("RGBA", (432, 768), (0, 0, 0, 0))
    image.paste((20, 200, 40, 255), (216, 0, 432, 768))
    layout = Layout(background=(255, 0, 255))
    tile = decode_tile(encode(image, "PNG"), layout)
    assert tile.mode == "RGB"
    assert tile.getpixel((40, 192)) == (255, 0, 255)
    assert close(tile.getpixel((180, 192)), GREEN, 2)


def test_palette_png_with_transparency() -> None:
    image = Image.new("P", (216, 384), 0)
    image.putpalette([0, 0, 0, *GREEN] + [0] * 762)
    image.paste(1, (0, 192, 216, 384))
    data = encode(image, "PNG", transparency=0)
    tile = decode_tile(data, Layout(background=(10, 20, 30)))
    assert tile.getpixel((100, 50)) == (10, 20, 30)
    assert tile.getpixel((100, 300)) == GREEN


def test_sixteen_bit_greyscale_png() -> None:
    image = Image.new("I;16", (216, 384), 0x8080)
    tile = decode_tile(encode(image, "PNG"), LAYOUT)
    assert close(tile.getpixel((100, 100)), (128, 128, 128), 1)


def test_large_png_is_reduced_to_the_tile() -> None:
    image = halves((2160, 3840), RED, BLUE, vertical=True)
    tile = decode_tile(encode(image, "PNG", compress_level=1), LAYOUT)
    assert tile.size == (216, 384)
    assert close(tile.getpixel((108, 100)), RED, 1) and close(tile.getpixel((108, 300)), BLUE, 1)


def test_webp() -> None:
    tile = decode_tile(encode(Image.new("RGB", (540, 960), BLUE), "WEBP", lossless=True), LAYOUT)
    assert tile.getpixel((108, 192)) == BLUE


def test_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (216, 384), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    tile = decode_tile(data, LAYOUT)
    assert close(tile.getpixel((108, 192)), RED, 4)


def thirds() -> Image.Image:
    """768x384: red | green | blue, 256 px each."""
    image = Image.new("RGB", (768, 384), GREEN)
    image.paste(RED, (0, 0, 256, 384))
    image.paste(BLUE, (512, 0, 768, 384))
    return image


def test_crop_fills_the_tile_from_the_centre() -> None:
    tile = decode_tile(encode(thirds(), "PNG"), LAYOUT)
    assert tile.size == (216, 384)
    assert all(tile.getpixel((x, 192)) == GREEN for x in (0, 108, 215))


def test_contain_letterboxes_the_whole_picture() -> None:
    layout = Layout(fit="contain", background=(255, 255, 255))
    tile = decode_tile(encode(thirds(), "PNG"), layout)
    assert tile.size == (216, 108)  # 768x384 scaled into 216x384
    assert close(tile.getpixel((10, 54)), RED, 2) and close(tile.getpixel((205, 54)), BLUE, 2)
    canvas = new_canvas(layout)
    paste_tile(canvas, tile, 0, layout)
    assert canvas.getpixel((108, 20)) == (255, 255, 255)  # band above the letterboxed picture
    assert close(canvas.getpixel((108, 192)), GREEN, 2)


def test_small_covers_are_scaled_up() -> None:
    tile = decode_tile(encode(Image.new("RGB", (54, 96), RED), "PNG"), LAYOUT)
    assert tile.size == (216, 384) and close(tile.getpixel((108, 192)), RED, 1)


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    with pytest.raises(CoverError) as caught:
        decode_tile(data, Layout(max_pixels=9_999))
    assert caught.value.code == "too_many_pixels"
    assert decode_tile(data, Layout(max_pixels=10_000)).size == (216, 384)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height: a decompression bomb's header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20_000, 100_000])  # ours refuses it; Pillow's own guard too
def test_bomb_header_is_refused_before_decoding(side: int) -> None:
    data = png_header_only(side, side)
    assert len(data) < 200
    with pytest.raises(CoverError) as caught:
        decode_tile(data, LAYOUT)
    assert caught.value.code == "too_many_pixels"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html><body>Not found</body></html>", "not_an_image"),
        (b"", "not_an_image"),
        (b"\xff\xd8\xff\xe0" + bytes(200), "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "corrupt_image"),
        (b"GIF89a" + bytes(10), "corrupt_image"),
    ],
)
def test_bad_bytes_give_a_named_error(data: bytes, code: str) -> None:
    with pytest.raises(CoverError) as caught:
        decode_tile(data, LAYOUT)
    assert caught.value.code == code


def test_truncated_jpeg_is_corrupt() -> None:
    image = Image.effect_noise((1080, 1920), 60).convert("RGB")
    data = encode(image, "JPEG", quality=90)
    with pytest.raises(CoverError) as caught:
        decode_tile(data[: len(data) // 3], LAYOUT)
    assert caught.value.code == "corrupt_image"


def test_placeholder_is_a_marked_grey_tile_distinct_from_the_background() -> None:
    for background in ((0, 0, 0), (255, 255, 255), (58, 58, 58)):
        layout = Layout(background=background)
        fill, cross = placeholder_colours(background)
        assert max(abs(a - b) for a, b in zip(fill, background, strict=True)) >= 40
        tile = placeholder_tile(layout)
        assert tile.size == (216, 384)
        assert tile.getpixel((108, 20)) == fill  # off the diagonals
        assert tile.getpixel((108, 192)) == cross  # where the diagonals cross


def test_encoded_page_is_a_jpeg_of_the_canvas() -> None:
    layout = Layout(rows=1, cols=2, tile_width=64, tile_height=64, background=(0, 0, 255))
    canvas = new_canvas(layout)
    paste_tile(canvas, Image.new("RGB", (64, 64), RED), 1, layout)
    page = Image.open(io.BytesIO(encode_jpeg(canvas, 95)))
    assert page.format == "JPEG" and page.size == (128, 64)
    assert close(page.getpixel((32, 32)), (0, 0, 255)) and close(page.getpixel((96, 32)), RED)


def test_placeholder_tile_draws_cross_corner_to_corner() -> None:
    layout = Layout(tile_width=100, tile_height=100)
    tile = placeholder_tile(layout)
    fill, cross = placeholder_colours(layout.background)
    assert tile.getpixel((20, 20)) == cross and tile.getpixel((80, 20)) == cross
    assert tile.getpixel((20, 80)) == cross and tile.getpixel((50, 10)) == fill


@pytest.mark.parametrize("fit", ["crop", "contain"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_cover_already_tile_sized_is_used_as_is(fit: str, fmt: str) -> None:
    # Nothing to resize: the decoded image itself is the tile, and must outlive Image.open.
    data = encode(halves((216, 384), RED, BLUE), fmt)
    tile = decode_tile(data, Layout(fit=fit))
    canvas = new_canvas(LAYOUT)
    paste_tile(canvas, tile, 0, LAYOUT)
    assert tile.size == (216, 384)
    assert close(canvas.getpixel((50, 192)), RED) and close(canvas.getpixel((160, 192)), BLUE)
