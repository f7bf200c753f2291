"""The state machine's paths and the step models name the same fields.

A path in the ASL that names a field the model lacks (or a model field a Task never receives)
would fail a run on AWS, not a unit test; here it fails this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collage.contracts import (
    AggregateEvent,
    ExecutionInput,
    RenderEvent,
    RunSummary,
    SplitEvent,
    SplitResult,
)
from collage.handlers import aggregate, render, split

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "collage_workflow.asl.json").read_text())
STATES = ASL["States"]
MAP = STATES["RenderCollages"]


def fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def model_at(model: type[BaseModel], path: str) -> Any:
    """Follow a JSONPath like `$.split.creators` through the models; fail on an unknown field."""
    current: Any = model
    for part in path.removeprefix("$.").split("."):
        assert part in current.model_fields, f"{path}: {current.__name__} has no field {part!r}"
        annotation = current.model_fields[part].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not None]
        current = next((a for a in candidates if isinstance(a, type)), annotation)
    return current


def test_the_split_task_receives_exactly_its_event_and_selects_fields_of_its_result():
    state = STATES["SplitByCreator"]
    payload = {
        key.removesuffix(".$"): value for key, value in state["Parameters"]["Payload"].items()
    }
    assert set(payload) == fields(SplitEvent)
    assert all(model_at(ExecutionInput, value) for value in payload.values())
    selected = {
        key.removesuffix(".$"): value.removeprefix("$.Payload.")
        for key, value in state["ResultSelector"].items()
    }
    assert set(selected) == set(selected.values()) == fields(SplitResult)
    assert state["ResultPath"] == "$.split" and "split" in fields(AggregateEvent)


def test_every_catch_into_the_aggregate_function_writes_a_field_of_its_event():
    reporting = {"Aggregate", "RecordFailedRun", "RecordAggregateFailure"}
    for name, state in STATES.items():
        for catch in state.get("Catch", []):
            if catch["Next"] not in reporting:  # the state machine's own last-resort path
                continue
            assert catch["ResultPath"].count(".") == 1, name  # a top-level field of the state
            model_at(AggregateEvent, catch["ResultPath"])


def test_the_map_reads_its_settings_and_gives_each_child_a_render_event():
    assert model_at(ExecutionInput, MAP["MaxConcurrencyPath"]) is int
    assert model_at(ExecutionInput, MAP["ToleratedFailurePercentagePath"]) is float
    selector = {key.removesuffix(".$") for key in MAP["ItemSelector"]}
    assert selector == fields(RenderEvent)
    assert MAP["ItemSelector"]["item.$"] == "$$.Map.Item.Value"  # an element of items.json
    assert MAP["ResultPath"] == "$.map_result" and "map_result" in fields(AggregateEvent)
    (child,) = MAP["ItemProcessor"]["States"].values()
    assert child["Parameters"]["Payload.$"] == "$" and child["OutputPath"] == "$.Payload"


def test_choices_read_fields_the_models_have():
    any_creators = STATES["AnyCreators"]["Choices"][0]["Variable"]
    assert model_at(AggregateEvent, any_creators) is int  # $.split.creators
    did_succeed = STATES["DidRunSucceed"]["Choices"][0]
    assert model_at(RunSummary, did_succeed["Variable"])
    assert did_succeed["StringEquals"] in RunSummary.model_fields["status"].annotation.__args__


def test_the_aggregate_steps_receive_the_whole_state():
    for name in ("Aggregate", "RecordFailedRun"):
        assert STATES[name]["Parameters"]["Payload.$"] == "$", name
    payload = STATES["RecordAggregateFailure"]["Parameters"]["Payload"]
    assert {key.removesuffix(".$") for key in payload} <= fields(AggregateEvent)
    # The whole state at the end of a run validates as the aggregate event.
    state = json.loads((ROOT / "events" / "aggregate_input.json").read_text())
    assert set(state) <= fields(AggregateEvent)
    AggregateEvent.model_validate(state)


def test_the_handlers_validate_the_models_the_tasks_name():
    for module, model in ((split, SplitEvent), (render, RenderEvent), (aggregate, AggregateEvent)):
        source = Path(module.__file__).read_text()
        assert re.search(rf"parse_event\({model.__name__}, event", source), module.__name__


def test_the_sample_task_inputs_fit_the_models():
    for name, model in (("split_input", SplitEvent), ("render_input", RenderEvent)):
        model.model_validate(json.loads((ROOT / "events" / f"{name}.json").read_text()))


def test_each_step_returns_the_model_the_state_machine_reads():
    """The outputs are typed too: what each step returns is the model whose fields the ASL
    reads ($.split.*, the map child's $.Payload, the run summary's $.status)."""
    from typing import get_type_hints

    from collage.aggregate import finish_run
    from collage.contracts import CreatorResult, CreatorSummary
    from collage.split_task import split_run

    assert get_type_hints(split_run)["return"] is SplitResult
    assert get_type_hints(CreatorResult.summary)["return"] is CreatorSummary
    assert get_type_hints(finish_run)["return"] is RunSummary
    for module, returned in (
        (split, "summary"),
        (render, "result.summary()"),
        (aggregate, "summary"),
    ):
        source = Path(module.__file__).read_text()
        assert re.search(rf"return {re.escape(returned)}\.model_dump\(", source), module.__name__
    (child,) = MAP["ItemProcessor"]["States"].values()
    assert child["OutputPath"] == "$.Payload"  # the child's output is the CreatorSummary
    assert STATES["Aggregate"]["OutputPath"] == "$.Payload"  # the execution's output
    for model in (SplitResult, CreatorSummary, RunSummary):
        assert model.model_config.get("extra") == "forbid", model  # no field slips in unnamed
