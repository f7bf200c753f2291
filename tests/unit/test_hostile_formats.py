"""Formats that CDNs serve, decoded to tiles and checked by pixels; hostile ones bounded.

Every image is generated here (tests.support.hostile_images). Bounds are checked on what
would blow up without them: the refusal code, and for memory a child process with a capped
address space that reports its peak RSS.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
from PIL import GifImagePlugin, Image, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from collage.engine import ifd_guard, render, structure
from collage.engine.render import CoverError, Layout, decode_tile
from tests.support.hostile_images import (
    BLUE,
    GREEN,
    RED,
    avif_with_exif,
    directory_bomb,
    encode,
    gif_frames,
    gif_with_comments,
    heic,
    jpeg_with_empty_segments,
    oriented,
    png,
    png_chunk,
    png_with_empty_chunks,
    progressive_jpeg,
    scan_count,
    unsupported_images,
    with_extra_scans,
    with_segment,
)

LAYOUT = Layout()  # 216x384 tiles, crop
MAGENTA = (255, 0, 255)
ON_MAGENTA = Layout(background=MAGENTA)
ROOT = Path(__file__).resolve().parents[2]


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 14) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def halves(size: tuple[int, int], top, bottom) -> Image.Image:
    image = Image.new("RGB", size, top)
    image.paste(bottom, (0, size[1] // 2, size[0], size[1]))
    return image


def refused(data: bytes, layout: Layout = LAYOUT) -> CoverError:
    with pytest.raises(CoverError) as caught:
        decode_tile(data, layout)
    return caught.value


# --- AVIF and HEIC -------------------------------------------------------------------------------


def test_avif_decodes() -> None:
    tile = decode_tile(encode(halves((432, 768), RED, BLUE), "AVIF", quality=90), LAYOUT)
    assert tile.size == (216, 384)
    assert close(tile.getpixel((108, 40)), RED) and close(tile.getpixel((108, 340)), BLUE)


def test_heic_decodes() -> None:
    tile = decode_tile(heic(halves((432, 768), RED, BLUE)), LAYOUT)
    assert tile.size == (216, 384)
    assert close(tile.getpixel((108, 40)), RED) and close(tile.getpixel((108, 340)), BLUE)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIC", "WEBP"])
def test_alpha_is_composited_on_the_background(fmt: str) -> None:
    picture = Image.new("RGBA", (216, 384), (0, 0, 0, 0))
    picture.paste((*GREEN, 255), (0, 192, 216, 384))
    data = heic(picture) if fmt == "HEIC" else encode(picture, fmt, quality=95)
    tile = decode_tile(data, ON_MAGENTA)
    assert close(tile.getpixel((108, 60)), MAGENTA) and close(tile.getpixel((108, 320)), GREEN)


def test_heic_without_its_decoder_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_heif_plugin", lambda: False)
    error = refused(heic(Image.new("RGB", (64, 64), RED)))
    assert error.code == "unsupported_format" and "HEIC" in str(error)


# --- EXIF orientation ----------------------------------------------------------------------------


def marker_corner(tile: Image.Image) -> list[str]:
    """The corners of the tile where the red marker is."""
    width, height = tile.size
    corners = {"top-left": (8, 8), "top-right": (width - 9, 8)}
    corners |= {"bottom-left": (8, height - 9), "bottom-right": (width - 9, height - 9)}
    for name, point in corners.items():
        assert close(tile.getpixel(point), RED) or close(tile.getpixel(point), BLUE), name
    return [name for name, point in corners.items() if close(tile.getpixel(point), RED)]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "HEIC"])
def test_every_exif_orientation_shows_the_cover_upright(fmt: str, orientation: int) -> None:
    # AVIF keeps the orientation as irot/imir boxes and HEIC's decoder applies them itself;
    # the others carry the EXIF tag. A mirrored or turned tile puts the marker elsewhere.
    tile = decode_tile(oriented(fmt, orientation), LAYOUT)
    assert tile.size == (216, 384)
    assert marker_corner(tile) == ["top-left"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_a_jpeg_decoded_at_reduced_scale(orientation: int) -> None:
    tile = decode_tile(oriented("JPEG", orientation, size=(864, 1536)), LAYOUT)
    assert marker_corner(tile) == ["top-left"]


# --- animations: the first frame, and no other frame read ----------------------------------------


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[tuple]:
    calls: list[tuple] = []
    original = getattr(owner, name)

    def spy(self, *args):
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(owner, name, spy)
    return calls


def animation(fmt: str, frames: int, size: tuple[int, int] = (32, 32)) -> bytes:
    # Alternating colours: identical neighbouring frames would be merged into one.
    colours = [RED] + [(BLUE, GREEN)[n % 2] for n in range(1, frames)]
    pictures = [Image.new("RGB", size, colour) for colour in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    first, *later = pictures
    return encode(first, fmt, save_all=True, append_images=later, duration=20, **options)


def test_a_gif_of_10000_frames_reads_only_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gif_frames(10_000)
    assert Image.open(io.BytesIO(data)).n_frames == 10_000
    seeks = count_calls(monkeypatch, GifImagePlugin.GifImageFile, "_seek")
    started = time.perf_counter()
    tile = decode_tile(data, LAYOUT)
    assert time.perf_counter() - started < 1.0
    assert close(tile.getpixel((108, 192)), RED)
    assert [frame for frame, *_ in seeks] == [0]


def test_an_animated_webp_decodes_only_the_first_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    data = animation("WEBP", 300)
    assert Image.open(io.BytesIO(data)).n_frames == 300
    decoded = count_calls(monkeypatch, WebPImagePlugin.WebPImageFile, "_get_next")
    tile = decode_tile(data, LAYOUT)
    assert close(tile.getpixel((108, 192)), RED) and len(decoded) == 1


def test_an_apng_reads_only_the_first_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    data = animation("PNG", 300)
    assert Image.open(io.BytesIO(data)).n_frames == 300
    seeks = count_calls(monkeypatch, PngImagePlugin.PngImageFile, "_seek")
    tile = decode_tile(data, LAYOUT)
    assert close(tile.getpixel((108, 192)), RED)
    assert all(frame == 0 for frame, *_ in seeks)


def test_an_animated_avif_shows_its_first_frame() -> None:
    tile = decode_tile(animation("AVIF", 5), LAYOUT)
    assert close(tile.getpixel((108, 192)), RED)


# --- PNG depths and transparency -----------------------------------------------------------------


def sample16(*values: int) -> bytes:
    return b"".join(value.to_bytes(2, "big") for value in values)


def trns(payload: bytes) -> bytes:
    return png_chunk(b"tRNS", payload)


RED16, GREEN16 = sample16(0xE600, 0x1400, 0x1400), sample16(0x1400, 0xC800, 0x2800)


@pytest.mark.parametrize(
    ("data", "top", "bottom"),
    [
        (png((8, 8), 16, 2, RED16, GREEN16), RED, GREEN),
        (png((8, 8), 16, 6, RED16 + sample16(0), GREEN16 + sample16(0xFFFF)), MAGENTA, GREEN),
        (png((8, 8), 16, 2, RED16, GREEN16, extra=trns(RED16)), MAGENTA, GREEN),
        (png((8, 8), 8, 2, bytes(RED), bytes(GREEN), extra=trns(sample16(*RED))), MAGENTA, GREEN),
        (png((8, 8), 16, 0, sample16(0x1234), sample16(0xC0C0)), (18, 18, 18), (192,) * 3),
        (
            png((8, 8), 16, 0, sample16(0x1234), sample16(0xC0C0), extra=trns(sample16(0x1234))),
            MAGENTA,
            (192,) * 3,
        ),
        (png((8, 8), 16, 4, sample16(0x1234, 0), sample16(0xC0C0, 0xFFFF)), MAGENTA, (192,) * 3),
        (png((8, 8), 8, 0, b"\x40", b"\xc0", extra=trns(sample16(0x40))), MAGENTA, (192,) * 3),
    ],
    ids=[
        "rgb16",
        "rgba16",
        "rgb16-transparent-colour",
        "rgb8-transparent-colour",
        "grey16",
        "grey16-transparent-grey",
        "grey-alpha16",
        "grey8-transparent-grey",
    ],
)
def test_png_depths_and_transparency(data: bytes, top, bottom) -> None:
    tile = decode_tile(data, ON_MAGENTA)
    assert close(tile.getpixel((108, 60)), top, 2)
    assert close(tile.getpixel((108, 330)), bottom, 2)


def test_palette_png_with_partial_transparency_blends_with_the_background() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([*GREEN, *RED] + [0] * 762)
    image.paste(1, (0, 4, 8, 8))
    # Entry 0 (green) half transparent, entry 1 (red) opaque.
    data = encode(image, "PNG", transparency=bytes([128, 255]))
    tile = decode_tile(data, Layout(background=(0, 0, 0)))
    assert close(tile.getpixel((108, 60)), (10, 100, 20), 3)
    assert close(tile.getpixel((108, 330)), RED, 2)


def test_gif_transparency_shows_the_background() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, *GREEN] + [0] * 762)
    image.paste(1, (0, 4, 8, 8))
    tile = decode_tile(encode(image, "GIF", transparency=0), ON_MAGENTA)
    assert tile.getpixel((108, 60)) == MAGENTA and close(tile.getpixel((108, 330)), GREEN, 2)


# --- extreme shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 100_000), (100_000, 1)])
@pytest.mark.parametrize("fit", ["crop", "contain"])
def test_extreme_aspect_ratios(size: tuple[int, int], fit: str) -> None:
    data = encode(Image.new("RGB", size, RED), "PNG")
    started = time.perf_counter()
    tile = decode_tile(data, Layout(fit=fit))
    assert time.perf_counter() - started < 1.0
    expected = {"crop": (216, 384), "contain": (1, 384) if size[0] == 1 else (216, 1)}[fit]
    assert tile.size == expected
    assert close(tile.getpixel((tile.width // 2, tile.height // 2)), RED, 2)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "AVIF", "HEIC"])
def test_a_one_pixel_cover_fills_its_tile(fmt: str) -> None:
    picture = Image.new("RGB", (1, 1), RED)
    data = heic(picture) if fmt == "HEIC" else encode(picture, fmt)
    tile = decode_tile(data, LAYOUT)
    assert tile.size == (216, 384)
    assert close(tile.getpixel((0, 0)), RED) and close(tile.getpixel((215, 383)), RED)


# --- EXIF, MPF and ICC blocks --------------------------------------------------------------------


def bounded_decode(tmp_path: Path, data: bytes) -> dict:
    """decode_tile in a child process with 1.5 GB of address space: its code (or 'ok'),
    seconds and peak RSS in MB. Unbounded, the bombs below take gigabytes."""
    (tmp_path / "cover").write_bytes(data)
    program = textwrap.dedent(
        """
        import json, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        from collage.engine.render import CoverError, Layout, decode_tile
        data = open(sys.argv[1], "rb").read()
        started = time.perf_counter()
        try:
            decode_tile(data, Layout())
            code = "ok"
        except CoverError as error:
            code = error.code
        except MemoryError:
            code = "MemoryError"
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
        print(json.dumps({"code": code, "seconds": time.perf_counter() - started, "mb": peak}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "cover")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def small_jpeg() -> bytes:
    return encode(Image.new("RGB", (64, 64), RED), "JPEG")


def without_jfif(jpeg: bytes) -> bytes:
    """Pillow reads the EXIF block at open only when no JFIF segment gives the resolution."""
    assert jpeg[2:4] == b"\xff\xe0"
    return jpeg[:2] + jpeg[4 + int.from_bytes(jpeg[4:6], "big") :]


def directory_at(block: bytes) -> tuple[TiffImagePlugin.ImageFileDirectory_v2, io.BytesIO]:
    directory = TiffImagePlugin.ImageFileDirectory_v2(block[:8])
    fp = io.BytesIO(block)
    fp.seek(directory.next)
    return directory, fp


def test_a_real_directory_copies_less_than_its_block_and_a_bomb_far_more() -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "A camera maker", "Model X", "Firmware 1.0"
    exif[0x0112] = 6  # inline: copies nothing
    directory, fp = directory_at(exif.tobytes()[6:])
    copied, length = ifd_guard.copied_bytes(directory, fp)
    assert copied == len("A camera maker\0Model X\0Firmware 1.0\0") and length > copied
    assert fp.tell() == directory.next
    copied, length = ifd_guard.copied_bytes(*directory_at(directory_bomb(65_000)))
    assert length == 65_000 and copied > 5_000 * length


@pytest.mark.parametrize(
    "make",
    [
        lambda: with_segment(
            without_jfif(small_jpeg()), 0xFFE1, b"Exif\0\0" + directory_bomb(65_000, 7)
        ),
        lambda: with_segment(small_jpeg(), 0xFFE2, b"MPF\0" + directory_bomb(65_000)),
        lambda: encode(Image.new("RGB", (64, 64), RED), "PNG", exif=directory_bomb(3_000_000, 7)),
        lambda: encode(Image.new("RGB", (64, 64), RED), "WEBP", exif=directory_bomb(3_000_000)),
        lambda: avif_with_exif(directory_bomb(1_000_000)),
    ],
    ids=["jpeg-exif", "jpeg-mpf", "png-exif", "webp-exif", "avif-exif"],
)
def test_directory_bombs_render_in_bounded_time_and_memory(tmp_path: Path, make) -> None:
    outcome = bounded_decode(tmp_path, make())
    assert outcome["code"] == "ok"
    assert outcome["seconds"] < 2 and outcome["mb"] < 250, outcome


def test_a_16_mb_icc_profile_in_255_jpeg_segments(tmp_path: Path) -> None:
    jpeg = small_jpeg()
    for part in range(255, 0, -1):
        jpeg = with_segment(jpeg, 0xFFE2, b"ICC_PROFILE\0" + bytes([part, 255]) + bytes(65_000))
    assert len(jpeg) > 16_000_000
    outcome = bounded_decode(tmp_path, jpeg)
    assert outcome["code"] == "ok" and outcome["seconds"] < 2 and outcome["mb"] < 250, outcome


def test_an_icc_profile_that_inflates_past_pillows_limit_is_refused_quickly() -> None:
    profile = b"icc\0\0" + zlib.compress(bytes(1 << 30), 9)  # 1 GiB of zeros in ~1 MB
    data = encode(Image.new("RGB", (64, 64), RED), "PNG")
    at = data.index(b"IDAT") - 4
    data = data[:at] + png_chunk(b"iCCP", profile) + data[at:]
    started = time.perf_counter()
    assert refused(data).code == "corrupt_image"
    assert time.perf_counter() - started < 1.0


# --- progressive JPEG scans ----------------------------------------------------------------------


def test_a_progressive_jpeg_with_its_usual_scans_decodes() -> None:
    data = progressive_jpeg((864, 1536))
    assert scan_count(data) == 10
    assert close(decode_tile(data, LAYOUT).getpixel((108, 192)), RED)


def test_scans_up_to_the_limit_decode_and_one_more_is_refused() -> None:
    size = (216, 384)
    base = progressive_jpeg(size)
    at_limit = with_extra_scans(base, structure.MAX_SCANS - scan_count(base), size)
    assert scan_count(at_limit) == structure.MAX_SCANS
    assert close(decode_tile(at_limit, LAYOUT).getpixel((108, 192)), RED)
    error = refused(with_extra_scans(base, structure.MAX_SCANS + 1 - scan_count(base), size))
    assert error.code == "too_many_scans" and "100 scans" in str(error)


def test_ten_thousand_scans_are_refused_before_decoding() -> None:
    # 16 megapixels: each extra scan costs libjpeg ~2 ms, 10,000 of them ~20 s.
    size = (4000, 4000)
    data = with_extra_scans(progressive_jpeg(size), 10_000, size)
    assert len(data) < 500_000
    started = time.perf_counter()
    assert refused(data).code == "too_many_scans"
    assert time.perf_counter() - started < 0.5


def test_scan_markers_after_the_image_end_do_not_count() -> None:
    # A motion photo: a JPEG with a video appended after its EOI, where 0xFFDA occurs freely.
    data = progressive_jpeg((216, 384)) + b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda\x12" * 500
    assert close(decode_tile(data, LAYOUT).getpixel((108, 192)), RED)


# --- files of many small parts -------------------------------------------------------------------


def test_png_chunks_up_to_the_limit_decode_and_more_are_refused() -> None:
    # IHDR and IDAT count too.
    assert decode_tile(png_with_empty_chunks(structure.MAX_PNG_CHUNKS - 2), LAYOUT)
    assert refused(png_with_empty_chunks(structure.MAX_PNG_CHUNKS - 1)).code == "too_many_chunks"


def test_a_million_empty_png_chunks_are_refused_quickly() -> None:
    data = png_with_empty_chunks(1_000_000)  # 12 MB: Pillow alone takes ~5 s
    started = time.perf_counter()
    assert refused(data).code == "too_many_chunks"
    assert time.perf_counter() - started < 0.5


def test_jpeg_segments_up_to_the_limit_decode_and_more_are_refused() -> None:
    # The small JPEG has 9 segments of its own up to its image data: APP0, 2 DQT, SOF, 4 DHT
    # and SOS.
    limit = structure.MAX_JPEG_SEGMENTS
    assert decode_tile(jpeg_with_empty_segments(limit - 9), LAYOUT)
    assert refused(jpeg_with_empty_segments(limit - 8)).code == "too_many_chunks"
    started = time.perf_counter()
    assert refused(jpeg_with_empty_segments(2_500_000)).code == "too_many_chunks"
    assert time.perf_counter() - started < 0.5


def test_megabytes_of_stray_bytes_in_a_jpeg_header_are_corrupt() -> None:
    data = with_segment(small_jpeg(), 0xFFFE, b"ok")  # SOI, then a comment: 8 bytes
    stray = data[:8] + b"\x01" * (2 << 20) + data[8:]  # Pillow reads them a byte at a time
    error = refused(stray)
    assert error.code == "corrupt_image" and "stray bytes" in str(error)


def test_megabytes_of_stray_bytes_before_a_gif_frame_are_corrupt() -> None:
    data = gif_with_comments(1)  # header, a comment, the frame
    at = data.index(b"\x21\xfe") + 5
    stray = data[:at] + bytes(2 << 20) + data[at:]  # Pillow skips them a byte at a time too
    error = refused(stray)
    assert error.code == "corrupt_image" and "stray bytes" in str(error)
    assert close(decode_tile(data[:at] + bytes(1000) + data[at:], LAYOUT).getpixel((9, 9)), RED, 4)


def test_gif_comment_blocks_before_the_first_frame_are_bounded() -> None:
    assert close(decode_tile(gif_with_comments(1_000), LAYOUT).getpixel((108, 192)), RED, 4)
    data = gif_with_comments(1_000_000)  # Pillow joins them quadratically: minutes
    started = time.perf_counter()
    assert refused(data).code == "too_many_chunks"
    assert time.perf_counter() - started < 0.5


# --- refused formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(unsupported_images()))
def test_other_image_formats_are_refused_by_name(kind: str) -> None:
    error = refused(unsupported_images()[kind])
    assert error.code == "unsupported_format"


def test_a_video_is_not_an_image() -> None:
    data = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(100)
    assert refused(data).code == "not_an_image"
