"""The sample events in events/ (for `sam local invoke -e`) stay in step with the code."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from collage.config import ProcessingConfig
from collage.contracts import AggregateEvent, MapItem, RenderEvent, SplitEvent
from collage.runs import MapSettings, run_from_message, run_from_s3_event
from collage.split import split_csv

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_s3_event_starts_the_run_whose_input_is_the_sample():
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    upload = S3EventNotificationEventBridgeModel.model_validate(load("s3_object_created.json"))
    request = run_from_s3_event(upload, ProcessingConfig())
    assert request.execution_input(MapSettings()) == load("execution_input.json")


def test_sqs_sample_is_a_valid_message():
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    (record,) = SQSEvent(load("sqs_message.json")).records
    sent = datetime.fromtimestamp(int(record.attributes.sent_timestamp) / 1000, UTC)
    request = run_from_message(record.message_id, record.body, sent, "in", ProcessingConfig())
    assert request.output_prefix == "sqs-trigger/manual-batch/collages/"
    assert request.timestamp == "20250119T103000Z-17ada02b63"  # the message's time, name digest


def test_task_inputs_carry_what_each_step_reads():
    execution = load("execution_input.json")
    split_input = load("split_input.json")
    assert split_input == {"run": execution["run"], "config": execution["config"]}
    SplitEvent.model_validate(split_input)
    render_input = load("render_input.json")
    RenderEvent.model_validate(render_input)
    out = io.BytesIO()
    split_csv(io.BytesIO(b"creator_name,cover_url\nalice,https://x.example/1.jpg\n"), out, 35)
    (item,) = json.loads(out.getvalue())
    assert set(render_input["item"]) == set(item) == set(MapItem.model_fields)
    aggregate_input = load("aggregate_input.json")
    assert AggregateEvent.model_validate(aggregate_input).split is not None
