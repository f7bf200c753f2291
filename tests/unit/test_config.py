import pytest

from collage.config import ConfigError, ProcessingConfig, build_config, config_from_env


def test_defaults_are_the_seed_systems():
    config = ProcessingConfig()
    assert (config.rows, config.cols, config.quality) == (5, 7, 95)
    assert (config.max_workers, config.timeout, config.max_retries) == (8, 30.0, 3)
    assert config.max_images_per_creator == 35


def test_overrides_apply_on_top_of_a_base():
    base = build_config({"rows": 4})
    config = build_config({"quality": "80", "fit": "contain"}, base=base)
    assert (config.rows, config.quality, config.fit) == (4, 80, "contain")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"rows": 0}, "rows must be between 1 and 20"),
        ({"quality": 500}, "quality must be between 1 and 100"),
        ({"max_workers": 10000}, "max_workers must be between 1 and 64"),
        ({"rows": True}, "rows must be a number"),
        ({"rows": 2.5}, "rows must be a whole number"),
        ({"cols": "seven"}, "cols must be a number"),
        ({"fit": "stretch"}, "fit must be one of crop, contain"),
        ({"background": "red"}, "background must be a colour"),
        ({"colour": 1}, "unknown processing_config keys: colour"),
    ],
)
def test_bad_values_are_refused_with_their_name(overrides, named):
    with pytest.raises(ConfigError, match=named):
        build_config(overrides)


def test_non_object_is_refused():
    with pytest.raises(ConfigError, match="must be a JSON object"):
        build_config(["rows", 5])


def test_environment_sets_stack_defaults():
    config = config_from_env({"COLLAGE_ROWS": "3", "COLLAGE_FIT": "contain", "COLLAGE_COLS": ""})
    assert (config.rows, config.cols, config.fit) == (3, 7, "contain")
