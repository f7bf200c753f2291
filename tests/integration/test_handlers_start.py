"""The starters on moto: S3 upload events and SQS batches (partial batch responses)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from collage_tools.emulator import (
    LambdaContext,
    received_message,
    s3_object_created_event,
    sqs_record,
)
from tests.support.s3_faults import moto_stack_buckets

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:collage-queue"
CSV = "creator_name,cover_url,updated_at\nalice,https://cdn.example/a.jpg,2025-01-01\n"


@pytest.fixture
def machine(monkeypatch) -> Iterator[dict[str, str]]:
    """Buckets plus a state machine that records its executions (nothing runs)."""
    with moto_stack_buckets(monkeypatch) as names:
        arn = names.store.sfn.create_state_machine(
            name="collage-test",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/collage-test",
        )["stateMachineArn"]
        names["arn"] = arn
        yield names


def executions(machine) -> list[dict]:
    sfn = machine.store.sfn
    listed = sfn.list_executions(stateMachineArn=machine["arn"])["executions"]
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]


def message(message_id: str, body: object, sent_ms: int = 1737282600000) -> dict:
    text = body if isinstance(body, str) else json.dumps(body)
    return sqs_record(received_message(message_id, text, sent_ms), QUEUE_ARN)


def good_body(**overrides: object) -> dict:
    body = {
        "processing_type": "csv_data",
        "csv_data": CSV,
        "processing_config": {"rows": 2, "cols": 2},
        "output_prefix": "manual-batch/",
    }
    body.update(overrides)
    return body


def sqs_handler(machine, records: list[dict]) -> dict:
    from collage.handlers.start_from_sqs import make_handler

    handler = make_handler(machine.runtime(state_machine_arn=machine["arn"]))
    return handler({"Records": records}, LambdaContext("start-sqs", 30, 256))


def test_bad_messages_are_reported_alone_and_the_good_ones_start(machine, caplog):
    records = [
        message("m-good-1", good_body()),
        message("m-json", "{not json"),
        message("m-rows", good_body(processing_config={"rows": 0})),
        message("m-good-2", good_body(output_prefix="other/")),
        message("m-type", good_body(processing_type="video")),
    ]

    response = sqs_handler(machine, records)

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "m-json"},
            {"itemIdentifier": "m-rows"},
            {"itemIdentifier": "m-type"},
        ]
    }
    started = executions(machine)
    assert len(started) == 2
    inputs = sorted(json.loads(e["input"])["run"]["output_prefix"] for e in started)
    assert inputs == ["sqs-trigger/manual-batch/collages/", "sqs-trigger/other/collages/"]
    kept = machine.store.list_keys(machine["input"], "sqs-inbox/")
    assert len(kept) == 2
    assert all(
        machine.store.s3.get_object(Bucket=machine["input"], Key=k)["Body"].read() == CSV.encode()
        for k in kept
    )
    refused = [r for r in caplog.records if r.getMessage() == "message refused"]
    reasons = {r.message_id: r.reason for r in refused}
    assert set(reasons) == {"m-json", "m-rows", "m-type"}
    assert "not valid JSON" in reasons["m-json"]
    assert "rows: Input should be greater than or equal to 1, got 0" in reasons["m-rows"]
    assert "processing_type: Input should be 'csv_data', got 'video'" in reasons["m-type"]


def test_an_all_good_batch_reports_no_failures_and_a_redelivery_starts_nothing(machine):
    records = [message("m-1", good_body()), message("m-2", good_body())]
    assert sqs_handler(machine, records) == {"batchItemFailures": []}
    assert sqs_handler(machine, records) == {"batchItemFailures": []}  # redelivered: same names
    assert len(executions(machine)) == 2


def test_an_oversized_body_is_refused(machine):
    huge = good_body(csv_data=CSV + "x" * (1024 * 1024))
    response = sqs_handler(machine, [message("m-huge", huge), message("m-ok", good_body())])
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-huge"}]}
    assert len(executions(machine)) == 1
    assert len(machine.store.list_keys(machine["input"], "sqs-inbox/")) == 1  # nothing kept for it


def test_s3_upload_event_starts_one_named_run_and_ignores_other_objects(machine):
    from collage.handlers.start_from_s3 import make_handler

    handler = make_handler(machine.runtime(state_machine_arn=machine["arn"]))
    context = LambdaContext("start-s3", 30, 256)
    event = s3_object_created_event(machine["input"], "csv-files/daily/covers.csv", 10, "e1")
    first = handler(event, context)
    again = handler(json.loads(json.dumps(event)), context)
    ignored = handler(s3_object_created_event(machine["input"], "csv-files/x.txt", 1, "e"), context)

    # Redelivered while the first is still running: AWS (and moto) return the same execution.
    assert first["started"] is True and again["executionArn"] == first["executionArn"]
    assert ignored == {"started": False, "ignored": "csv-files/x.txt"}
    (execution,) = executions(machine)
    document = json.loads(execution["input"])
    assert document["run"]["source_key"] == "csv-files/daily/covers.csv"
    assert document["run"]["output_prefix"] == "s3-trigger/csv-files/daily/covers/collages/"
    assert document["map"] == {"max_concurrency": 40, "tolerated_failure_percentage": 25.0}
    assert set(document["config"]) >= {"rows", "cols", "quality", "timeout", "max_retries"}


@pytest.mark.parametrize(
    ("stored", "named", "expected"),
    [
        ("csv-files/a b+c.csv", "csv-files/a+b%2Bc.csv", "csv-files/a b+c.csv"),  # encoded
        ("csv-files/a b+c.csv", "csv-files/a b+c.csv", "csv-files/a b+c.csv"),  # as stored
        ("csv-files/50%25 off.csv", "csv-files/50%25 off.csv", "csv-files/50%25 off.csv"),
        ("csv-files/é.csv", "csv-files/%C3%A9.csv", "csv-files/é.csv"),
        ("csv-files/gone+x.csv", "csv-files/never+there.csv", "csv-files/never+there.csv"),
    ],
)
def test_the_uploaded_key_is_found_whether_or_not_the_event_encoded_it(stored, named, expected):
    """Issue 22, item 8: S3's notifications form-encode keys; if its EventBridge events do
    too, `a b+c.csv` arrives as `a+b%2Bc.csv` and must still start the run of that object."""
    import boto3
    from moto import mock_aws

    from collage.aws import Store
    from collage.event_keys import uploaded_key

    with mock_aws():
        store = Store(s3=boto3.client("s3", region_name="us-east-1"))
        store.s3.create_bucket(Bucket="in-bucket")
        store.s3.put_object(Bucket="in-bucket", Key=stored, Body=b"x")
        assert uploaded_key(store, "in-bucket", named, None) == expected


def test_when_both_readings_exist_the_events_etag_decides():
    import boto3
    from moto import mock_aws

    from collage.aws import Store
    from collage.event_keys import uploaded_key

    with mock_aws():
        store = Store(s3=boto3.client("s3", region_name="us-east-1"))
        store.s3.create_bucket(Bucket="in-bucket")
        tags = {
            key: store.s3.put_object(Bucket="in-bucket", Key=key, Body=key.encode())["ETag"]
            for key in ("csv-files/a+b.csv", "csv-files/a b.csv")
        }
        for key, tag in tags.items():
            assert uploaded_key(store, "in-bucket", "csv-files/a+b.csv", tag) == key
