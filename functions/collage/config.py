"""Processing settings: one model, with the ranges docs/operations.md lists, validated by pydantic.

Every setting has a default (the seed system's), can be set for a whole stack through an
environment variable (`COLLAGE_<NAME>`, filled from template parameters), and can be
overridden per SQS message through `processing_config`. An unknown key, a wrong type or an
out-of-range value is refused with a message that names it. A message's values are checked
strictly (JSON numbers for numbers; `true` is not 1, "5" is not 5, NaN is not a number); the
environment's are text. The values are also bounded together: the pixels a collage task holds
(check_render_size), whichever of the three sources they come from.

The model is a plain dataclass whose constraints are `annotated_types` metadata in its (lazy)
annotations: building the defaults imports neither pydantic nor annotated_types, which
`collage render` of local files (it never validates) would pay on every start. A pydantic
BaseModel would cost it ~480 M instructions (pydantic itself); importing annotated_types at
the top, 49 M: 14% of its start-up imports, measured with callgrind, and the render
benchmark's start-up target (the floor's + 25 ms) would not hold. So the name the annotations
use is bound when pydantic first needs it (resolve_constraints).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

if TYPE_CHECKING:
    from annotated_types import Interval

# Longest cover URL we accept. With max_images_per_creator <= 100 this keeps every map item
# (one creator's covers) far below Step Functions' 256 KiB payload limit.
MAX_URL_LENGTH = 2048
_HEX = frozenset("0123456789abcdef")

# The settings as a whole bound a collage task's memory. A task holds one page's canvas,
# rows x cols x tile_width x tile_height pixels, and while an early cover is still downloading,
# the later ones' tiles (up to max_images_per_creator of tile_width x tile_height) wait for
# their turn. Measured (build_collage in one process, 1080x1920 JPEG covers, 2 cores), peak RSS
# rose by at most 7.8 bytes per pixel held (3 for the RGB canvas, 3 for the tiles, the rest
# decode and encode buffers): a 5x7 page of 1080x1920 tiles (72.6 M px) +538 MB, 10x10 of
# 540x960 (51.8 M px) +261 MB, one 1080x1920 tile with 99 tiles waiting (207 M px) +815 MB.
# So RenderMemorySize >= RENDER_BASE_MB + BYTES_PER_HELD_PIXEL x MAX_RENDER_PIXELS / 2^20
# (90 + 610 = 700 MB), which leaves ~320 MB of the default 1024 MB for the covers in flight
# (max_workers of them, each at most max_image_bytes) and the upload. The default settings
# hold 5.8 M px. tests/unit/test_config.py checks this against template.yaml.
MAX_RENDER_PIXELS = 80_000_000
BYTES_PER_HELD_PIXEL = 8
RENDER_BASE_MB = 90  # the render handler's imports (87 MB measured) and the runtime


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ProcessingConfig:
    # pydantic's ConfigDict: no unknown key; NaN and the infinities are not numbers.
    __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}  # noqa: RUF012

    rows: Annotated[int, Interval(ge=1, le=20)] = 5
    cols: Annotated[int, Interval(ge=1, le=20)] = 7
    quality: Annotated[int, Interval(ge=1, le=100)] = 95
    max_workers: Annotated[int, Interval(ge=1, le=64)] = 8
    timeout: Annotated[float, Interval(ge=1.0, le=300.0)] = 30.0
    max_retries: Annotated[int, Interval(ge=0, le=10)] = 3
    max_images_per_creator: Annotated[int, Interval(ge=1, le=100)] = 35
    tile_width: Annotated[int, Interval(ge=16, le=2048)] = 216
    tile_height: Annotated[int, Interval(ge=16, le=2048)] = 384
    fit: Literal["crop", "contain"] = "crop"
    background: str = "#000000"
    on_failure: Literal["placeholder", "close_up"] = "placeholder"
    max_image_bytes: Annotated[int, Interval(ge=1024, le=100 * 1024 * 1024)] = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        digits = str(self.background).strip().lower().removeprefix("#")
        if len(digits) != 6 or not set(digits) <= _HEX:
            raise ConfigError(f"background must be a colour like #1a1a1a, got {self.background!r}")
        object.__setattr__(self, "background", "#" + digits)
        check_render_size(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(ProcessingConfig))


def check_render_size(config: ProcessingConfig) -> None:
    """Refuse settings whose canvas, or canvas plus waiting tiles, exceed MAX_RENDER_PIXELS."""
    tile = config.tile_width * config.tile_height
    cells = config.rows * config.cols
    sizes = f"{config.tile_width} x {config.tile_height}"
    cap = f"over the cap of {MAX_RENDER_PIXELS:,} (a collage task's memory)"
    if cells * tile > MAX_RENDER_PIXELS:
        raise ConfigError(
            f"rows x cols x tile_width x tile_height = {config.rows} x {config.cols} x {sizes} "
            f"= a {config.cols * config.tile_width} x {config.rows * config.tile_height} canvas "
            f"of {cells * tile:,} pixels, {cap}"
        )
    held = (cells + config.max_images_per_creator) * tile
    if held > MAX_RENDER_PIXELS:
        raise ConfigError(
            "(rows x cols + max_images_per_creator) x tile_width x tile_height = "
            f"({cells} + {config.max_images_per_creator}) x {sizes} = {held:,} pixels held "
            f"(a page and the tiles waiting for an earlier cover), {cap}"
        )


def resolve_constraints() -> None:
    """Bind `Interval` here, where pydantic looks up the names in ProcessingConfig's
    annotations: before a validator of it (or of a model holding it) is built."""
    global Interval  # the module namespace is what pydantic reads
    from annotated_types import Interval


@cache
def _validator() -> Any:
    from pydantic import TypeAdapter

    resolve_constraints()
    return TypeAdapter(ProcessingConfig)


def _validate(values: Mapping[str, Any], strict: bool) -> ProcessingConfig:
    import json  # here, not at the top: `collage render` with default settings never needs it

    from pydantic import ValidationError

    try:
        # JSON mode: strict there means JSON types (a dataclass may come from a JSON object).
        document = json.dumps(dict(values), default=str)
        return _validator().validate_json(document, strict=strict)
    except ValidationError as error:
        from collage.validation import describe

        unknown = [
            str(p["loc"][0])
            for p in error.errors(include_url=False)
            if p["type"] == "unexpected_keyword_argument"
        ]
        if unknown:
            raise ConfigError(f"unknown processing_config keys: {', '.join(unknown)}") from None
        raise ConfigError(describe(error, limit=1)) from None


def build_config(
    overrides: Mapping[str, Any] | None = None,
    base: ProcessingConfig | None = None,
    *,
    strict: bool = True,
) -> ProcessingConfig:
    """Apply `overrides` (a message's `processing_config`) on top of `base`, validated."""
    base = base or ProcessingConfig()
    if overrides is None:
        return base
    if not isinstance(overrides, Mapping):
        raise ConfigError("processing_config must be a JSON object")
    if not overrides:
        return base
    return _validate({**base.to_dict(), **overrides}, strict)


def config_from_env(environ: Mapping[str, str] | None = None) -> ProcessingConfig:
    """The stack-wide defaults: `COLLAGE_ROWS=4` and so on, from the function's environment."""
    environ = os.environ if environ is None else environ
    overrides = {
        name: environ[f"COLLAGE_{name.upper()}"]
        for name in FIELD_NAMES
        if environ.get(f"COLLAGE_{name.upper()}", "") != ""
    }
    return build_config(overrides, strict=False)
