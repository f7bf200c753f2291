"""End to end on the real ASL: trigger -> split -> distributed map -> aggregate, on moto."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from tests.support.workflow import csv_text, image, is_collage, keys, read, read_json, run_csv

pytestmark = pytest.mark.e2e


def test_uploaded_csv_becomes_collages_a_report_and_an_archived_csv(
    local_stack, covers, cover_server
):
    missing = cover_server.url("/c/missing.jpg")
    day = date(2025, 1, 1)
    rows = [("alice", url, str(day + timedelta(days=n))) for n, url in enumerate(covers[:35])]
    rows += [("bob", covers[35], "2025-02-01"), ("bob", missing, "2025-02-02")]
    rows += [("carol", "nope", "2025-01-01")]  # a rejected row, line 39
    _, described = run_csv(local_stack, csv_text(rows), "csv-files/daily/covers.csv")

    assert described["status"] == "SUCCEEDED"
    summary = json.loads(described["output"])
    assert summary["status"] == "completed_with_failures"
    assert summary["creators"] == {"total": 2, "succeeded": 1, "partial": 1, "failed": 0}
    assert summary["covers"]["downloaded"] == 36 and summary["covers"]["failed"] == 1
    assert summary["rows"] == {"used": 37, "rejected": 1, "warnings": 0}

    prefix = "s3-trigger/csv-files/daily/covers/collages/"
    output = keys(local_stack, "OutputBucket")
    assert all(key.startswith(prefix) for key in output)
    collages = [k for k in output if is_collage(k)]
    assert len(collages) == 2
    assert any(k.startswith(prefix + "alice_") for k in collages)
    # Each collage's thumbnail, and the contact sheet beside the report.
    thumbnails = [k for k in output if k.startswith(prefix + "thumbs/")]
    assert thumbnails == sorted(k.replace(prefix, prefix + "thumbs/") for k in collages)
    sheet = summary["sheet"].removeprefix(f"s3://{local_stack.names['OutputBucket']}/")
    assert sheet in output and sheet == summary["report"].split("/", 3)[3][:-4] + "html"
    with image(local_stack, next(k for k in collages if "/alice_" in k)) as alice:
        assert (alice.format, alice.size) == ("JPEG", (7 * 216, 5 * 384))

    report_key = next(k for k in output if k.endswith(".json"))
    assert summary["report"].endswith(report_key)
    report = read_json(local_stack, "OutputBucket", report_key)
    assert report["row_issues"] == [
        {
            "line": 39,
            "severity": "error",
            "creator": "carol",
            "message": report["row_issues"][0]["message"],
            "column": "cover_url",
            "value": report["row_issues"][0]["value"],
        }
    ]
    bob = next(c for c in report["creators"] if c["creator"] == "bob")
    assert bob["status"] == "partial"
    assert bob["failures"][0]["url"] == missing
    assert bob["failures"][0]["code"] == "http_status" and bob["failures"][0]["line"] == 38

    inputs = keys(local_stack, "InputBucket")
    assert not [k for k in inputs if k.startswith("csv-files/")]
    archived = [k for k in inputs if k.startswith("archive/daily/covers_")]
    assert len(archived) == 1 and read(local_stack, "InputBucket", archived[0]).startswith(
        b"creator_name"
    )


def test_tiles_follow_the_documented_order(local_stack, cover_server):
    from PIL import Image

    from collage_tools.covers import encode

    colours = {
        "red": (220, 20, 20),
        "green": (20, 200, 20),
        "blue": (20, 20, 220),
        "white": (240, 240, 240),
    }
    urls = {
        name: cover_server.add(
            f"/solid/{name}.png", encode(Image.new("RGB", (216, 384), rgb), "png")
        )
        for name, rgb in colours.items()
    }
    rows = [
        ("dora", urls["red"], "2025-01-01"),
        ("dora", urls["white"], ""),  # no date: after every dated cover
        ("dora", urls["green"], "2025-03-01"),  # newest: first cell
        ("dora", urls["blue"], "2025-01-01"),  # same date as red: CSV order
    ]
    _, described = run_csv(local_stack, csv_text(rows))
    assert described["status"] == "SUCCEEDED"
    key = next(k for k in keys(local_stack, "OutputBucket") if k.endswith(".jpg"))
    with image(local_stack, key) as collage:
        centres = [collage.getpixel((216 * col + 108, 192)) for col in range(4)]
    expected = [colours[n] for n in ("green", "red", "blue", "white")]
    for got, want in zip(centres, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 12, (centres, expected)


def test_sqs_message_gives_collages_under_its_output_prefix(local_stack, covers):
    csv_data = csv_text([("erin", url, "2025-01-01") for url in covers[:4]])
    body = {
        "processing_type": "csv_data",
        "csv_data": csv_data,
        "processing_config": {"rows": 2, "cols": 2, "quality": 80},
        "output_prefix": "manual-batch/",
    }
    local_stack.send_message(json.dumps(body))
    delivered = local_stack.deliver_messages()
    assert [d["started"] for d in delivered] == [True]

    execution = local_stack.store.sfn.list_executions(
        stateMachineArn=local_stack.names["CollageStateMachine"]
    )["executions"][0]
    described = local_stack.wait(execution["name"], timeout=120)
    assert described["status"] == "SUCCEEDED"
    output = keys(local_stack, "OutputBucket")
    collages = [k for k in output if is_collage(k)]
    assert len(collages) == 1 and collages[0].startswith("sqs-trigger/manual-batch/collages/erin_")
    with image(local_stack, collages[0]) as collage:
        assert collage.size == (2 * 216, 2 * 384)
    assert any(k.endswith(".json") for k in output)
    archived = keys(local_stack, "InputBucket", "archive/sqs-inbox/")
    assert len(archived) == 1 and read(local_stack, "InputBucket", archived[0]).decode() == csv_data
    assert keys(local_stack, "InputBucket", "sqs-inbox/") == []


def test_the_same_upload_event_delivered_twice_starts_one_run(local_stack, covers):
    from collage_tools.emulator import s3_object_created_event

    data = csv_text([("fay", covers[0], "2025-01-01")]).encode()
    bucket = local_stack.names["InputBucket"]
    local_stack.store.s3.put_object(Bucket=bucket, Key="csv-files/twice.csv", Body=data)
    event = s3_object_created_event(bucket, "csv-files/twice.csv", len(data), "etag-1")
    first = local_stack.invoke("StartFromS3Function", event)
    local_stack.wait(first["name"], timeout=120)
    second = local_stack.invoke("StartFromS3Function", event)
    assert second["name"] == first["name"] and second["started"] is False
    executions = local_stack.store.sfn.list_executions(
        stateMachineArn=local_stack.names["CollageStateMachine"]
    )["executions"]
    assert len(executions) == 1
    assert len([k for k in keys(local_stack, "OutputBucket") if is_collage(k)]) == 1


def test_unusable_csv_fails_the_run_and_moves_it_to_failed_with_the_reason(local_stack):
    _, described = run_csv(
        local_stack, "creator_name,cover_url,updated_at\n", "csv-files/empty.csv"
    )
    assert described["status"] == "FAILED"
    inputs = keys(local_stack, "InputBucket")
    assert not [k for k in inputs if k.startswith("csv-files/")]
    failed_csv = [k for k in inputs if k.startswith("failed/empty_") and k.endswith(".csv")]
    reasons = [k for k in inputs if k.startswith("failed/empty_") and k.endswith(".error.json")]
    assert len(failed_csv) == 1 and len(reasons) == 1
    reason = read_json(local_stack, "InputBucket", reasons[0])
    assert reason["stage"] == "split" and "no data rows" in reason["reason"]
    report_key = next(k for k in keys(local_stack, "OutputBucket") if k.endswith(".json"))
    report = read_json(local_stack, "OutputBucket", report_key)
    assert report["status"] == "failed" and "CsvFileError" in report["error"]["reason"]


@pytest.mark.slow
def test_a_map_of_more_than_a_thousand_creators_completes(local_stack, cover_server):
    """moto's map worker recurses once per item and dies past ~970 items unless the emulator
    raises the recursion limit and thread stack size (bridge 5 of collage_tools.emulator)."""
    from collage_tools.covers import make_cover

    url = cover_server.add("/tiny.jpg", make_cover(3, (54, 96)))
    rows = [(f"creator{n:04d}", url, "2025-01-01") for n in range(1100)]
    _, described = run_csv(local_stack, csv_text(rows), "csv-files/many.csv", timeout=900)
    assert described["status"] == "SUCCEEDED"
    summary = json.loads(described["output"])
    assert summary["creators"]["succeeded"] == 1100 and summary["collages"] == 1100
