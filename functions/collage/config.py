"""Processing settings: one model, with the ranges the README lists, validated by pydantic.

Every setting has a default (the seed system's), can be set for a whole stack through an
environment variable (`COLLAGE_<NAME>`, filled from template parameters), and can be
overridden per SQS message through `processing_config`. An unknown key, a wrong type or an
out-of-range value is refused with a message that names it. A message's values are checked
strictly (JSON numbers for numbers; `true` is not 1, "5" is not 5); the environment's are text.

The model is a plain dataclass whose constraints are `annotated_types` metadata in its (lazy)
annotations, so building the defaults imports neither pydantic nor annotated_types (~15 ms,
which `collage render` of local files would pay on every start); `load_constraints` brings the
names in before pydantic reads the annotations.
"""

from __future__ import annotations

import json
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


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ProcessingConfig:
    __pydantic_config__ = {"extra": "forbid"}  # noqa: RUF012 (a pydantic ConfigDict)

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(ProcessingConfig))


def load_constraints() -> None:
    """Make the annotations' names resolvable (pydantic evaluates them in this module)."""
    import annotated_types

    globals().setdefault("Interval", annotated_types.Interval)


@cache
def _validator() -> Any:
    from pydantic import TypeAdapter

    load_constraints()
    return TypeAdapter(ProcessingConfig)


def _validate(values: Mapping[str, Any], strict: bool) -> ProcessingConfig:
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
