"""JPEG covers are decoded at the smallest DCT scale that keeps quality (DRAFT_SLACK)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageChops, ImageStat

from collage.engine import render
from collage.engine.render import Layout, decode_tile
from collage_tools.covers import make_cover


def psnr(a: Image.Image, b: Image.Image) -> float:
    rms = ImageStat.Stat(ImageChops.difference(a, b)).rms
    return 10 * math.log10(255**2 / (sum(v * v for v in rms) / 3))


def reference(data: bytes, tile: tuple[int, int]) -> Image.Image:
    full = Image.open(io.BytesIO(data)).convert("RGB")
    scale = max(tile[0] / full.width, tile[1] / full.height)
    width, height = tile[0] / scale, tile[1] / scale
    left, top = (full.width - width) / 2, (full.height - height) / 2
    return full.resize(tile, Image.Resampling.LANCZOS, box=(left, top, left + width, top + height))


def test_a_720x1280_cover_decodes_at_quarter_scale_and_still_matches(monkeypatch):
    decoded = []
    original = Image.Image.load

    def spy(self):
        result = original(self)
        decoded.append(self.size)
        return result

    data = make_cover(4, (720, 1280))
    monkeypatch.setattr(Image.Image, "load", spy)
    tile = decode_tile(data, Layout())
    monkeypatch.undo()
    assert tile.size == (216, 384)
    assert (180, 320) in decoded, decoded  # 1/4 scale: 83% of the tile, made up by BICUBIC
    assert psnr(tile, reference(data, (216, 384))) >= 36


def test_no_jpeg_is_decoded_below_the_slack():
    data = make_cover(5, (1080, 1920))  # 1/8 would be 135x240: 62% of the tile, too soft
    tile = decode_tile(data, Layout())
    assert psnr(tile, reference(data, (216, 384))) >= 38


def test_filters_by_step():
    assert render._resampling(1.2) is Image.Resampling.BICUBIC
    assert render._resampling(2.0) is Image.Resampling.LANCZOS
    assert render._resampling(0.8) is Image.Resampling.HAMMING
    assert render._resampling(0.3) is Image.Resampling.LANCZOS
