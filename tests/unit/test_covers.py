"""Synthetic covers: deterministic, distinct, photo-like in size, every format decodes."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from collage.engine.formats import sniff
from collage_tools.covers import COVER_SIZE, cover_colour, cover_image, make_cover, write_covers


def test_same_arguments_same_bytes() -> None:
    assert make_cover(3, (180, 320)) == make_cover(3, (180, 320))
    assert make_cover(3, (180, 320)) != make_cover(4, (180, 320))
    assert make_cover(3, (180, 320), seed=1) != make_cover(3, (180, 320))


def test_neighbouring_covers_have_distinct_colours() -> None:
    colours = [cover_colour(index) for index in range(35)]
    for a, b in itertools.pairwise(colours):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) >= 40


def test_full_size_jpeg_is_photo_like() -> None:
    data = make_cover(0)
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("JPEG", COVER_SIZE)
    # Near real covers (200-400 KB), not a flat colour that decodes for free.
    assert 150_000 < len(data) < 600_000
    spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 10


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif"])
def test_every_format(fmt: str) -> None:
    data = make_cover(1, (90, 160), fmt=fmt)
    assert sniff(data[:16]) == fmt
    assert Image.open(io.BytesIO(data)).size == (90, 160)


def test_write_covers(tmp_path: Path) -> None:
    paths = write_covers(tmp_path / "covers", 3, (90, 160), fmt="png", prefix="x")
    assert [p.name for p in paths] == ["x-000.png", "x-001.png", "x-002.png"]
    assert paths[2].read_bytes() == make_cover(2, (90, 160), fmt="png")


def test_main_colour_shows_in_the_picture() -> None:
    image = cover_image(5, (270, 480), grain=0)
    # The top band is the gradient's first colour (the label sits lower).
    assert all(
        abs(a - b) <= 30 for a, b in zip(image.getpixel((5, 2)), cover_colour(5), strict=True)
    )
