import json
import re
from pathlib import Path

import pytest

from collage.config import (
    BYTES_PER_HELD_PIXEL,
    MAX_RENDER_PIXELS,
    RENDER_BASE_MB,
    ConfigError,
    ProcessingConfig,
    build_config,
    config_from_env,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_seed_systems():
    config = ProcessingConfig()
    assert (config.rows, config.cols, config.quality) == (5, 7, 95)
    assert (config.max_workers, config.timeout, config.max_retries) == (8, 30.0, 3)
    assert config.max_images_per_creator == 35


def test_overrides_apply_on_top_of_a_base():
    base = build_config({"rows": 4})
    config = build_config({"quality": 80, "fit": "contain"}, base=base)
    assert (config.rows, config.quality, config.fit) == (4, 80, "contain")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"rows": 0}, "rows: Input should be greater than or equal to 1, got 0"),
        ({"quality": 500}, "quality: Input should be less than or equal to 100, got 500"),
        ({"max_workers": 10000}, "max_workers: Input should be less than or equal to 64"),
        ({"rows": True}, "rows: Input should be a valid integer, got True"),
        ({"rows": 2.5}, "rows: Input should be a valid integer, got 2.5"),
        ({"quality": "80"}, "quality: Input should be a valid integer, got '80'"),
        ({"cols": "seven"}, "cols: Input should be a valid integer"),
        ({"timeout": float("nan")}, "timeout: Input should be a finite number, got nan"),
        ({"fit": "stretch"}, "fit: Input should be 'crop' or 'contain'"),
        ({"background": "red"}, "background must be a colour like #1a1a1a, got 'red'"),
        ({"colour": 1, "size": 2}, "unknown processing_config keys: colour, size"),
    ],
)
def test_bad_values_are_refused_with_their_name(overrides, named):
    with pytest.raises(ConfigError, match=named):
        build_config(overrides)


def test_non_object_is_refused():
    with pytest.raises(ConfigError, match="must be a JSON object"):
        build_config(["rows", 5])


def test_environment_sets_stack_defaults():
    env = {
        "COLLAGE_ROWS": "3",
        "COLLAGE_FIT": "contain",
        "COLLAGE_COLS": "",
        "COLLAGE_TIMEOUT": "9",
    }
    config = config_from_env(env)
    assert (config.rows, config.cols, config.fit, config.timeout) == (3, 7, "contain", 9.0)


def test_environment_values_are_checked_too():
    with pytest.raises(ConfigError, match="rows: Input should be less than or equal to 20"):
        config_from_env({"COLLAGE_ROWS": "21"})


def test_defaults_need_no_validator_and_a_model_checks_itself():
    assert build_config() == build_config({}) == ProcessingConfig()
    assert ProcessingConfig(background=" #ABCDEF").background == "#abcdef"
    with pytest.raises(ConfigError, match="background must be a colour"):
        ProcessingConfig(background="#12345")


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        # NaN and the infinities (Python's json reads and writes them as NaN / Infinity)
        ("timeout", float("inf"), "timeout: Input should be a finite number, got inf"),
        ("timeout", float("-inf"), "timeout: Input should be a finite number, got -inf"),
        ("rows", float("nan"), "rows: Input should be a valid integer, got nan"),
        ("max_image_bytes", float("inf"), "max_image_bytes: Input should be a valid integer"),
        # floats for ints, even whole ones
        ("cols", 7.0, "cols: Input should be a valid integer, got 7.0"),
        ("max_image_bytes", 1e6, "max_image_bytes: Input should be a valid integer, got 1000000.0"),
        # bools are not numbers
        ("quality", False, "quality: Input should be a valid integer, got False"),
        ("timeout", True, "timeout: Input should be a valid number, got True"),
        ("max_retries", True, "max_retries: Input should be a valid integer, got True"),
        # strings are not numbers, nor are null, lists or objects
        ("timeout", "30", "timeout: Input should be a valid number, got '30'"),
        ("tile_width", "216", "tile_width: Input should be a valid integer, got '216'"),
        ("max_workers", None, "max_workers: Input should be a valid integer, got None"),
        ("rows", [5], "rows: Input should be a valid integer, got [5]"),
        ("rows", 10**40, "rows: Input should be less than or equal to 20"),
        ("fit", True, "fit: Input should be 'crop' or 'contain', got True"),
        ("background", 0, "background: Input should be a valid string, got 0"),
    ],
)
def test_hostile_types_are_refused_with_their_name(key, value, named):
    with pytest.raises(ConfigError, match=f"^{re.escape(named)}"):
        build_config({key: value})


def test_nan_and_infinity_from_the_environment_are_refused():
    for value in ("nan", "inf", "-Infinity"):
        with pytest.raises(ConfigError, match="timeout: Input should be a finite number"):
            config_from_env({"COLLAGE_TIMEOUT": value})


def grid(rows, cols, width, height, images=35) -> dict:
    return {
        "rows": rows,
        "cols": cols,
        "tile_width": width,
        "tile_height": height,
        "max_images_per_creator": images,
    }


@pytest.mark.parametrize(
    "settings",
    [
        grid(5, 7, 216, 384),  # the default: 5.8 M pixels held
        grid(10, 10, 216, 384, images=100),
        grid(5, 7, 540, 960),  # 2.5x the default tile
        grid(10, 10, 432, 768, images=100),
        grid(10, 10, 540, 960),  # a 5400 x 9600 canvas
        grid(4, 4, 1080, 1920, images=16),  # covers at full size
        grid(1, 1, 2048, 2048, images=18),
        grid(20, 20, 16, 16, images=100),
    ],
)
def test_realistic_grids_pass_the_size_cap(settings):
    config = build_config(settings)
    held = (config.rows * config.cols + config.max_images_per_creator) * (
        config.tile_width * config.tile_height
    )
    assert held <= MAX_RENDER_PIXELS


def test_a_huge_canvas_is_refused_naming_the_keys_and_the_figure():
    with pytest.raises(ConfigError) as refused:
        build_config(grid(20, 20, 2048, 2048))
    assert str(refused.value) == (
        "rows x cols x tile_width x tile_height = 20 x 20 x 2048 x 2048 = a 40960 x 40960 "
        "canvas of 1,677,721,600 pixels, over the cap of 80,000,000 (a collage task's memory)"
    )
    with pytest.raises(ConfigError, match="= a 9720 x 9216 canvas of 89,579,520 pixels, over"):
        build_config(grid(6, 9, 1080, 1536))  # just over: 89.6 M pixels


def test_tiles_waiting_for_a_slow_cover_count_too():
    # A 1x1 page holds little, but 100 covers of 2048x2048 may wait for the first one.
    with pytest.raises(ConfigError) as refused:
        build_config(grid(1, 1, 2048, 2048, images=100))
    assert str(refused.value).startswith(
        "(rows x cols + max_images_per_creator) x tile_width x tile_height = "
        "(1 + 100) x 2048 x 2048 = 423,624,704 pixels held"
    )
    with pytest.raises(ConfigError, match=r"\(35 \+ 35\) x 1080 x 1920 = 145,152,000 pixels held"):
        build_config(grid(5, 7, 1080, 1920))


def test_the_size_cap_applies_to_the_stack_defaults_and_on_top_of_them():
    env = {"COLLAGE_ROWS": "20", "COLLAGE_COLS": "20", "COLLAGE_TILE_WIDTH": "2048"}
    with pytest.raises(ConfigError, match="canvas of 1,258,291,200 pixels, over the cap"):
        config_from_env({**env, "COLLAGE_TILE_HEIGHT": "1536"})
    # Each value passes alone on top of the stack's defaults; together they are refused.
    base = config_from_env({"COLLAGE_TILE_WIDTH": "540", "COLLAGE_TILE_HEIGHT": "960"})
    assert build_config({"rows": 10}, base=base).rows == 10
    with pytest.raises(ConfigError, match="tile_height = 20 x 20 x 540 x 960 = a 10800 x 19200"):
        build_config({"rows": 20, "cols": 20}, base=base)
    with pytest.raises(ConfigError, match="canvas"):
        ProcessingConfig(rows=20, cols=20, tile_width=2048, tile_height=2048)


def test_the_cap_fits_the_render_functions_default_memory():
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    memory_mb = template["Parameters"]["RenderMemorySize"]["Default"]
    needed_mb = RENDER_BASE_MB + BYTES_PER_HELD_PIXEL * MAX_RENDER_PIXELS / 2**20
    # Room is left for the covers in flight: the default max_workers at a 20 MiB ceiling each.
    in_flight_mb = ProcessingConfig().max_workers * 20
    assert needed_mb + in_flight_mb <= memory_mb, (needed_mb, in_flight_mb, memory_mb)


def test_a_message_with_nan_is_refused_naming_the_key():
    from datetime import UTC, datetime

    from collage.runs import MessageError, run_from_message

    body = json.dumps(
        {
            "processing_type": "csv_data",
            "csv_data": "creator_name,cover_url\na,https://x.example/1.jpg\n",
            "output_prefix": "x",
            "processing_config": {"timeout": float("nan")},
        }
    )
    assert "NaN" in body  # what Python's json writes, and reads back
    with pytest.raises(MessageError, match="processing_config: timeout: Input should be a finite"):
        run_from_message("m-1", body, datetime.now(UTC), "in", ProcessingConfig())
