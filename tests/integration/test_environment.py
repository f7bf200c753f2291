"""Each handler names the variables it reads; the template sets them; a missing one fails the
cold start with its name (not a run that writes to a bucket called "")."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("StartFromS3Function", "StartFromSqsFunction", "SplitFunction", "RenderFunction")
FUNCTIONS += ("AggregateFunction",)


def template_functions() -> dict[str, dict]:
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    found = {}
    for name in FUNCTIONS:
        properties = template["Resources"][name]["Properties"]
        own = (properties.get("Environment") or {}).get("Variables") or {}
        found[name] = {"handler": properties["Handler"], "variables": {**shared, **own}}
    return found


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_template_sets_every_variable_the_handler_needs(function):
    spec = template_functions()[function]
    module = import_module(spec["handler"].rsplit(".", 1)[0])
    required = {
        name for name, info in module.Environment.model_fields.items() if info.is_required()
    }
    assert required, f"{function}: its handler names no variable"
    assert required <= set(spec["variables"]), function


@pytest.mark.parametrize("missing", ["OUTPUT_BUCKET", "TEMP_BUCKET"])
def test_a_missing_variable_fails_the_cold_start_with_its_name(missing):
    env = {key: value for key, value in os.environ.items() if key != missing}
    env["TEMP_BUCKET" if missing == "OUTPUT_BUCKET" else "OUTPUT_BUCKET"] = "some-bucket"
    cold_start = subprocess.run(
        [sys.executable, "-c", "import collage.handlers.render"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cold_start.returncode != 0
    last = cold_start.stderr.strip().splitlines()[-1]
    assert last.startswith("collage.handlers._runtime.MissingEnvironment: collage.handlers.render")
    assert f" {missing} missing or empty" in last


def test_a_blank_variable_is_missing():
    from collage.handlers import aggregate
    from collage.handlers._runtime import MissingEnvironment, Runtime

    env = {"INPUT_BUCKET": "in", "OUTPUT_BUCKET": "  ", "TEMP_BUCKET": ""}
    with pytest.raises(MissingEnvironment, match=r"OUTPUT_BUCKET, TEMP_BUCKET missing or empty"):
        Runtime.from_environment(aggregate.Environment, env)
    runtime = Runtime.from_environment(
        aggregate.Environment, {**env, "OUTPUT_BUCKET": "out", "TEMP_BUCKET": "t"}
    )
    assert (runtime.input_bucket, runtime.output_bucket, runtime.temp_bucket) == ("in", "out", "t")
