"""Delivered twice, retried, restarted: one run, the same keys, nothing rendered twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from collage_tools.cover_server import CoverServer
from collage_tools.covers import make_cover
from tests.support.s3_faults import S3Faults, fast_waits
from tests.support.workflow import csv_text, executions, is_collage, keys, read_json, run_csv

pytestmark = pytest.mark.e2e

TILE = (216, 384)
NAMES = ["ann", "bob", "cat", "dan", "eve"]


@pytest.fixture
def server() -> Iterator[CoverServer]:
    with CoverServer() as cover_server:
        for n in range(len(NAMES)):
            cover_server.add(f"/c/{n}.jpg", make_cover(n, TILE))
        yield cover_server


def rows(server: CoverServer) -> list[tuple[str, str, str]]:
    return [(name, server.url(f"/c/{n}.jpg"), "2025-01-01") for n, name in enumerate(NAMES)]


def restart(stack: Any, described: dict, name: str) -> dict:
    """Start the same execution input under a new name (what a redrive re-runs); wait."""

    sfn = stack.store.sfn
    document = sfn.describe_execution(executionArn=described["executionArn"])["input"]
    sfn.start_execution(
        stateMachineArn=stack.names["CollageStateMachine"], name=name, input=document
    )
    return stack.wait(name, timeout=120)


def etags(stack: Any, prefix: str = "") -> dict[str, str]:

    s3, bucket = stack.store.s3, stack.names["OutputBucket"]
    return {
        key: s3.head_object(Bucket=bucket, Key=key)["ETag"]
        for key in keys(stack, "OutputBucket", prefix)
        if is_collage(key)
    }


def test_the_same_upload_event_delivered_twice_at_once_starts_one_run(local_stack, server):
    from collage_tools.emulator import s3_object_created_event

    data = csv_text(rows(server)[:2]).encode()
    bucket = local_stack.names["InputBucket"]
    put = local_stack.store.s3.put_object(Bucket=bucket, Key="csv-files/twice.csv", Body=data)
    etag = put["ETag"].strip('"')  # the run copies only the object the event names
    event = s3_object_created_event(bucket, "csv-files/twice.csv", len(data), etag)

    first = local_stack.invoke("StartFromS3Function", event)
    second = local_stack.invoke("StartFromS3Function", event)  # while the first may still run

    assert second["name"] == first["name"]
    assert second["executionArn"] == first["executionArn"]
    assert local_stack.wait(first["name"], timeout=120)["status"] == "SUCCEEDED"
    assert len(executions(local_stack)) == 1
    assert server.hits["/c/0.jpg"] == server.hits["/c/1.jpg"] == 1
    assert len(etags(local_stack)) == 2


def test_a_redelivered_sqs_message_starts_one_run(local_stack, server):
    from collage_tools.emulator import received_message, sqs_record

    body = {
        "processing_type": "csv_data",
        "csv_data": csv_text(rows(server)[:1]),
        "output_prefix": "again/",
    }
    received = received_message("0b7c5a8e-1111-4d2c-9f00-5e1f2a3b4c5d", json.dumps(body))
    event = {"Records": [sqs_record(received, "arn:aws:sqs:us-east-1:123456789012:q")]}

    assert local_stack.invoke("StartFromSqsFunction", event) == {"batchItemFailures": []}
    (execution,) = executions(local_stack)
    local_stack.wait(execution["name"], timeout=120)
    received = received_message(received["MessageId"], received["Body"], receive_count=2)
    event = {"Records": [sqs_record(received, "arn:aws:sqs:us-east-1:123456789012:q")]}
    assert local_stack.invoke("StartFromSqsFunction", event) == {"batchItemFailures": []}

    assert len(executions(local_stack)) == 1
    assert server.hits["/c/0.jpg"] == 1
    # the collage, its thumbnail, the report and its contact sheet
    assert len(keys(local_stack, "OutputBucket", "sqs-trigger/again/collages/")) == 4


def test_the_render_task_invoked_twice_for_one_item_renders_once(local_stack, server):
    _, described = run_csv(local_stack, csv_text(rows(server)[:1]), "csv-files/once.csv")

    document = json.loads(
        local_stack.store.sfn.describe_execution(executionArn=described["executionArn"])["input"]
    )
    temp, prefix = local_stack.names["TempBucket"], document["run"]["temp_prefix"]
    (item,) = local_stack.store.get_json(temp, f"{prefix}items.json")
    before = etags(local_stack)

    again = local_stack.invoke(
        "RenderFunction", {"run": document["run"], "config": document["config"], "item": item}
    )

    assert again == {"creator": "ann", "status": "ok", "collages": 1, "covers_failed": 0}
    assert server.hits["/c/0.jpg"] == 1  # skipped: not downloaded again
    assert etags(local_stack) == before


def test_a_restarted_run_renders_only_the_creators_without_a_result(
    inline_stack, server, monkeypatch
):
    local_stack = inline_stack  # S3Faults reach this process's clients only
    # First run: bob's collage cannot be stored and the CSV cannot be archived (an S3 outage
    # that outlasts every retry), so the aggregate step fails; its catch reports the run as
    # failed and parks the CSV in failed/.
    with fast_waits(monkeypatch), S3Faults() as s3:
        s3.add("PutObject", "/collages/bob_")
        s3.add("CopyObject", "archive/")
        _, first = run_csv(local_stack, csv_text(rows(server)), "csv-files/outage.csv")
    assert first["status"] == "FAILED"
    assert keys(local_stack, "InputBucket", "csv-files/") == []
    assert len(keys(local_stack, "InputBucket", "failed/outage_")) == 2  # the CSV, .error.json
    rendered = etags(local_stack)
    assert len(rendered) == 4 and not [k for k in rendered if "/bob_" in k]
    hits = server.hits.copy()

    second = restart(local_stack, first, "outage-restarted")

    assert second["status"] == "SUCCEEDED"
    assert server.hits["/c/1.jpg"] == hits["/c/1.jpg"] + 1  # bob, rendered now
    assert all(server.hits[f"/c/{n}.jpg"] == hits[f"/c/{n}.jpg"] for n in (0, 2, 3, 4))
    after = etags(local_stack)
    assert {k: v for k, v in after.items() if "/bob_" not in k} == rendered  # untouched
    assert len(after) == 5
    summary = json.loads(second["output"])
    assert summary["status"] == "succeeded" and summary["creators"]["succeeded"] == 5
    report = read_json(local_stack, "OutputBucket", summary["report"].split("/", 3)[3])
    assert [r["creator"] for r in report["creators"]] == NAMES
    assert keys(local_stack, "InputBucket", "csv-files/") == []
    # The restart read the CSV from failed/, where the first run's catch parked it; the
    # aggregate step archives only the run's source key, so the CSV stays in failed/.
    assert len(keys(local_stack, "InputBucket", "failed/outage_")) == 2
