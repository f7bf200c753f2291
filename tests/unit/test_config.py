import pytest

from collage.config import ConfigError, ProcessingConfig, build_config, config_from_env


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
        ({"timeout": float("nan")}, "timeout: Input should be less than or equal to 300"),
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
