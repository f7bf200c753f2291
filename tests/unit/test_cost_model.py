"""The cost model prints its inputs and scales the way the bill does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cost_model.py"


@pytest.fixture(scope="module")
def model():
    spec = importlib.util.spec_from_file_location("cost_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_prints_inputs_costs_and_verdict(model, capsys):
    assert model.main([]) == 0
    out = capsys.readouterr().out
    for text in ("covers/month 2,000,000", "render.engine_cpu_seconds", "split.wall_seconds"):
        assert text in out
    assert "total (EXPRESS children)" in out and "total if children were STANDARD" in out
    assert "cost-model: processing $" in out


def test_costs_scale_with_volume_and_express_is_cheaper(model):
    figures, _ = model.measured()
    small = model.processing_costs(model.Volume(1_000_000, 35, 30, 1024, False), figures)
    large = model.processing_costs(model.Volume(2_000_000, 35, 30, 1024, False), figures)
    assert 1.8 < large["lambda"] / small["lambda"] < 2.2
    assert large["step_functions_express"] < large["step_functions_standard"]
    arm = model.processing_costs(model.Volume(2_000_000, 35, 30, 1024, True), figures)
    assert arm["lambda"] < large["lambda"]


def test_cpu_bound_tasks_get_faster_with_memory_until_the_network_bounds_them(model):
    render = {"engine_cpu_seconds": 1.0, "task_wall_seconds": 0.3}
    times = [model.collage_seconds(render, memory) for memory in (512, 1024, 1769, 3538)]
    assert times == sorted(times, reverse=True)
    assert times[-1] == pytest.approx(0.5 + 0.06)
