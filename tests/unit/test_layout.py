"""One owner for the run's keys: the state machine and the CLI name them as collage.layout does."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collage.config import ProcessingConfig
from collage.contracts import Run
from collage.layout import RunLayout, report_timestamp
from collage.runs import run_from_message, run_from_s3_event
from collage_tools.emulator import s3_object_created_event

ROOT = Path(__file__).resolve().parents[2]
ASL = (ROOT / "statemachine" / "collage_workflow.asl.json").read_text()
SENT = datetime(2025, 1, 19, 10, 30, tzinfo=UTC)


def runs() -> list[Run]:
    """A run of each trigger, made by the starters' own code."""
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    event = s3_object_created_event("in", "csv-files/daily/top creators.csv", 10, "abc")
    upload = S3EventNotificationEventBridgeModel.model_validate(event)
    message = json.dumps(
        {"processing_type": "csv_data", "csv_data": "x", "output_prefix": "campaigns/q1"}
    )
    requests = [
        run_from_s3_event(upload, ProcessingConfig()),
        run_from_message("m-1", message, SENT, "in", ProcessingConfig()),
    ]
    return [Run(**request.execution_input(_settings())["run"]) for request in requests if request]


def _settings():
    from collage.contracts import MapSettings

    return MapSettings()


def states_format(expression: str, run: Run, input_bucket: str) -> str:
    """Evaluate the ASL's `States.Format('...', $.run.x, ...)` for `run`."""
    found = re.fullmatch(r"States\.Format\('(.*)', (.*)\)", expression)
    assert found, expression
    template, paths = found[1].replace("${InputBucket}", input_bucket), found[2].split(", ")
    values = [getattr(run, path.removeprefix("$.run.")) for path in paths]
    return template.replace("{}", "%s") % tuple(values)


def formatted_keys() -> dict[str, str]:
    """Every key the state machine builds itself, by the state and field that build it."""
    found = {}
    for name, state in json.loads(ASL)["States"].items():
        for field, value in (state.get("Parameters") or {}).items():
            if isinstance(value, str) and value.startswith("States.Format("):
                found[f"{name}.{field}"] = value
    return found


@pytest.mark.parametrize("run", runs(), ids=["s3", "sqs"])
def test_the_state_machine_names_the_keys_the_layout_names(run):
    keys = RunLayout(run)
    expected = {
        "WriteFallbackReport.Key.$": keys.report,
        "ParkCsvDirectly.Key.$": keys.last_resort_parked,
        "WriteFallbackErrorNote.Key.$": keys.error_note(keys.last_resort_parked),
        "DescribeReportFailure.csv.$": f"s3://in/{keys.last_resort_parked}",
        "DescribeReportFailure.source.$": f"s3://{run.source_bucket}/{run.source_key}",
    }
    built = {where: states_format(value, run, "in") for where, value in formatted_keys().items()}
    assert built == expected


@pytest.mark.parametrize("run", runs(), ids=["s3", "sqs"])
def test_the_cli_finds_a_runs_timestamp_in_its_report_key(run):
    keys = RunLayout(run)
    assert report_timestamp(keys.report) == run.timestamp
    assert report_timestamp(keys.sheet_page(1)) is None
    assert report_timestamp(keys.collages("report", 1)[0]) is None  # a creator named "report"


@pytest.mark.parametrize("run", runs(), ids=["s3", "sqs"])
def test_every_key_of_a_run_is_in_its_own_area(run):
    keys = RunLayout(run)
    temp = [keys.source_copy, keys.items, keys.creators, keys.row_issues, keys.all_row_issues]
    temp += [keys.superseded, keys.result("alice")]
    assert all(key.startswith(f"runs/{run.id}/") for key in temp)
    assert len(set(temp)) == len(temp)
    output = [keys.report, keys.report_row_issues, keys.sheet_page(1), keys.sheet_page(2)]
    output += [*keys.collages("alice", 2), keys.thumbnail("alice")]
    assert all(key.startswith(run.output_prefix) and run.timestamp in key for key in output)
    assert len(set(output)) == len(output)
    parked = [keys.parked(failed=False), keys.parked(failed=True), keys.last_resort_parked]
    assert [key.split("/")[0] for key in parked] == ["archive", "failed", "failed"]
    assert all(key.endswith(f"_{run.timestamp}.csv") for key in parked)
