"""Processing settings: defaults, environment overrides and per-message overrides, validated.

Every setting has a default (the seed system's), can be set for a whole stack through an
environment variable (`COLLAGE_<NAME>`, filled from template parameters), and can be
overridden per SQS message through `processing_config`. Validation is strict: an unknown key,
a wrong type or an out-of-range value is refused with a message that names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

FIT_MODES = ("crop", "contain")
FAILURE_MODES = ("placeholder", "close_up")

# Longest cover URL we accept. With max_images_per_creator <= 100 this keeps every map item
# (one creator's covers) far below Step Functions' 256 KiB payload limit.
MAX_URL_LENGTH = 2048


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ProcessingConfig:
    rows: int = 5
    cols: int = 7
    quality: int = 95
    max_workers: int = 8
    timeout: float = 30.0
    max_retries: int = 3
    max_images_per_creator: int = 35
    tile_width: int = 216
    tile_height: int = 384
    fit: str = "crop"
    background: str = "#000000"
    on_failure: str = "placeholder"
    max_image_bytes: int = 20 * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# name -> (type, min, max); strings carry their allowed values instead of a range.
_LIMITS: dict[str, tuple[type, Any, Any]] = {
    "rows": (int, 1, 20),
    "cols": (int, 1, 20),
    "quality": (int, 1, 100),
    "max_workers": (int, 1, 64),
    "timeout": (float, 1.0, 300.0),
    "max_retries": (int, 0, 10),
    "max_images_per_creator": (int, 1, 100),
    "tile_width": (int, 16, 2048),
    "tile_height": (int, 16, 2048),
    "max_image_bytes": (int, 1024, 100 * 1024 * 1024),
}
_CHOICES: dict[str, tuple[str, ...]] = {"fit": FIT_MODES, "on_failure": FAILURE_MODES}
FIELD_NAMES = tuple(f.name for f in fields(ProcessingConfig))


def _coerce(name: str, value: Any) -> Any:
    if name in _CHOICES:
        if not isinstance(value, str) or value not in _CHOICES[name]:
            raise ConfigError(f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        return value
    if name == "background":
        return _parse_colour(value)
    kind, low, high = _LIMITS[name]
    # bool is an int in Python; a JSON `true` for `rows` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
    return number


def _parse_colour(value: Any) -> str:
    text = str(value).strip().lower()
    digits = text.removeprefix("#")
    if len(digits) != 6 or any(c not in "0123456789abcdef" for c in digits):
        raise ConfigError(f"background must be a colour like #1a1a1a, got {value!r}")
    return "#" + digits


def build_config(
    overrides: Mapping[str, Any] | None = None,
    base: ProcessingConfig | None = None,
) -> ProcessingConfig:
    """Apply `overrides` (a message's `processing_config`) on top of `base`, validating each."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise ConfigError("processing_config must be a JSON object")
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"unknown processing_config keys: {', '.join(map(str, unknown))}")
    values = (base or ProcessingConfig()).to_dict()
    for name, value in overrides.items():
        values[name] = _coerce(name, value)
    return ProcessingConfig(**values)


def config_from_env(environ: Mapping[str, str] | None = None) -> ProcessingConfig:
    """The stack-wide defaults: `COLLAGE_ROWS=4` and so on, from the function's environment."""
    environ = os.environ if environ is None else environ
    overrides = {
        name: environ[f"COLLAGE_{name.upper()}"]
        for name in FIELD_NAMES
        if environ.get(f"COLLAGE_{name.upper()}", "") != ""
    }
    return build_config(overrides)


def config_from_dict(data: Mapping[str, Any]) -> ProcessingConfig:
    """Rebuild a config that travelled through the state machine (already validated once)."""
    return build_config(data)
