"""Synthetic TikTok-like covers for the demo, the tests and the benchmark (no network needed).

A cover looks enough like a photo to cost what a real one costs to decode: a smooth two-colour
gradient, soft shapes, fine grain (so JPEGs come out near real covers' 200-400 KB at 1080x1920)
and a big index number so a person can check the order in a collage. Everything is derived
from (index, seed): the same arguments always give the same bytes.
"""

from __future__ import annotations

import colorsys
import io
import random
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

COVER_SIZE = (1080, 1920)  # TikTok's 9:16 portrait
_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
_SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "gif": ".gif"}
_SKETCH_SCALE = 4  # shapes are drawn at 1/4 size, blurred, then scaled up: soft like a photo


def cover_colour(index: int, seed: int = 0) -> tuple[int, int, int]:
    """The cover's main colour: hues spread by the golden ratio, so neighbours differ."""
    hue = ((index + seed * 7) * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.85)
    return (round(red * 255), round(green * 255), round(blue * 255))


def cover_image(
    index: int, size: tuple[int, int] = COVER_SIZE, *, seed: int = 0, grain: float = 4.0
) -> Image.Image:
    """The RGB picture of synthetic cover `index`."""
    rng = random.Random(index * 1_000_003 + seed)
    width, height = size
    sketch_size = (max(1, width // _SKETCH_SCALE), max(1, height // _SKETCH_SCALE))
    top = cover_colour(index, seed)
    bottom = tuple(max(0, min(255, c + rng.randint(-90, 90))) for c in top)
    gradient = Image.linear_gradient("L").resize(sketch_size)
    sketch = Image.composite(
        Image.new("RGB", sketch_size, bottom), Image.new("RGB", sketch_size, top), gradient
    )
    draw = ImageDraw.Draw(sketch)
    for _ in range(rng.randint(4, 8)):
        x, y = rng.uniform(0, sketch_size[0]), rng.uniform(0, sketch_size[1])
        radius = rng.uniform(0.05, 0.3) * sketch_size[0]
        shade = tuple(rng.randint(0, 255) for _ in range(3))
        box = (x - radius, y - radius * rng.uniform(0.5, 1.5), x + radius, y + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=shade)
        else:
            draw.rectangle(box, fill=shade)
    sketch = sketch.filter(ImageFilter.GaussianBlur(max(1, sketch_size[0] // 120)))
    image = sketch.resize(size, Image.Resampling.BICUBIC)
    if grain > 0:
        # Grain at half resolution: photo-like texture; per-pixel noise would bloat the JPEG.
        half = (max(1, width // 2), max(1, height // 2))
        # Uniform noise from our seeded generator (effect_noise uses C rand(): not repeatable)
        # scaled to a standard deviation of `grain` levels around 128.
        gain = grain * 12**0.5 / 256
        raw = Image.frombytes("L", half, rng.randbytes(half[0] * half[1]))
        noise = raw.point(lambda v: 128 + (v - 128) * gain).convert("RGB").resize(size)
        image = ImageChops.add(image, noise, scale=1.0, offset=-128)
    _draw_label(image, str(index))
    return image


def _draw_label(image: Image.Image, text: str) -> None:
    width, height = image.size
    font = ImageFont.load_default(size=max(10, width // 4))
    draw = ImageDraw.Draw(image)
    # Upper third, so a tile's centre shows the cover's colours, not the number.
    draw.text(
        (width // 2, height // 5),
        text,
        font=font,
        fill=(255, 255, 255),
        anchor="mm",
        stroke_width=max(1, width // 120),
        stroke_fill=(0, 0, 0),
    )


def encode(image: Image.Image, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """`image` as `fmt` ('jpeg', 'png', 'webp', 'gif') bytes."""
    out = io.BytesIO()
    options = {"quality": quality} if fmt in ("jpeg", "webp") else {}
    image.save(out, _FORMATS[fmt], **options)
    return out.getvalue()


def make_cover(
    index: int,
    size: tuple[int, int] = COVER_SIZE,
    *,
    fmt: str = "jpeg",
    quality: int = 90,
    seed: int = 0,
) -> bytes:
    """Synthetic cover `index` encoded as `fmt`."""
    return encode(cover_image(index, size, seed=seed), fmt, quality)


def write_covers(
    directory: Path | str,
    count: int,
    size: tuple[int, int] = COVER_SIZE,
    *,
    fmt: str = "jpeg",
    quality: int = 90,
    seed: int = 0,
    prefix: str = "cover",
) -> list[Path]:
    """Write covers 0..count-1 as `<prefix>-000.jpg`, ... into `directory`; return the paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{prefix}-{index:03d}{_SUFFIXES[fmt]}"
        path.write_bytes(make_cover(index, size, fmt=fmt, quality=quality, seed=seed))
        paths.append(path)
    return paths
