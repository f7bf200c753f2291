"""`collage serve` as a user runs it: a separate process on a free loopback port, driven only
through public clients (boto3 with endpoint_url, the `collage submit` / `watch` commands), as a
deployed stack is. Uploads and messages start runs by themselves: nothing calls a starter."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from collage.runs import message_execution_name
from collage_tools.emulator import received_message, s3_object_created_event, sqs_record
from tests.support.workflow import csv_text

pytestmark = pytest.mark.e2e
START_TIMEOUT = 60  # seconds for `collage serve` to say it is ready
COMMAND_TIMEOUT = 120


@pytest.fixture(scope="module")
def served():
    """`collage serve --port 0` in its own process; yields its announcement (key -> value)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "collage_tools.cli", "serve", "--port", "0", "--allow-loopback"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    announced = _read_announcement(process)
    yield announced
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "the local stack and its objects are gone" in err


def _read_announcement(process: subprocess.Popen) -> dict[str, str]:
    announced, ends = {}, time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        if line.startswith("ready:"):
            return announced
        key, _, value = line.strip().partition(": ")
        if value and " " not in key:
            announced[key] = value
        assert time.monotonic() < ends, "collage serve did not get ready"
    process.kill()
    raise AssertionError(f"collage serve exited: {process.stderr.read()}")


@pytest.fixture(scope="module")
def aws(served):
    """boto3 clients of the served endpoint, as a user's script makes them."""
    import boto3

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=served["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="user",
            aws_secret_access_key="user",
        )

    return client


def collage(served, *args: str) -> subprocess.CompletedProcess:
    """A `collage` command against the served stack, in its own process (as a user runs it)."""
    command = [sys.executable, "-m", "collage_tools.cli", *args, "--endpoint-url"]
    return subprocess.run(
        [*command, served["endpoint"]],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},  # no AWS settings of the host
    )


def _execution_of(aws, served, key: str, timeout: float = 30) -> dict:
    """The execution whose input names `key` (what a user would look up in the console)."""
    sfn, ends = aws("stepfunctions"), time.monotonic() + timeout
    while time.monotonic() < ends:
        for execution in sfn.list_executions(stateMachineArn=served["StateMachineArn"])[
            "executions"
        ]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described["input"])["run"]["source_key"] == key:
                return described
        time.sleep(0.2)
    raise AssertionError(f"no execution for {key}")


def test_an_upload_with_boto3_starts_a_run_that_watch_follows(served, aws, covers, tmp_path):
    key = f"csv-files/upload-{uuid.uuid4().hex[:6]}.csv"
    rows = [("ana", url, "2025-01-01") for url in covers[:4]]
    aws("s3").put_object(Bucket=served["InputBucketName"], Key=key, Body=csv_text(rows).encode())
    execution = _execution_of(aws, served, key)

    watched = collage(served, "watch", execution["name"], "--download", str(tmp_path))
    assert watched.returncode == 0, watched.stderr
    summary = json.loads(watched.stdout)
    assert summary["status"] == "succeeded" and summary["collages"] == 1
    assert summary["run_id"] == execution["name"]
    collages = [p for p in tmp_path.rglob("ana_*.jpg") if p.parent.name != "thumbs"]
    assert len(collages) == 1 and Image.open(collages[0]).size == (7 * 216, 5 * 384)
    assert "collage: SUCCEEDED" in watched.stderr
    # Said last: the contact sheet, downloaded with the collages.
    last = watched.stderr.rstrip().splitlines()[-1]
    assert last.startswith("collage: contact sheet: ") and last.endswith(".html")
    assert Path(last.removeprefix("collage: contact sheet: ")).is_file()
    archived = aws("s3").list_objects_v2(Bucket=served["InputBucketName"], Prefix="archive/")
    assert any(k["Key"].startswith("archive/upload-") for k in archived.get("Contents", []))


def test_submit_uploads_finds_the_run_and_downloads_its_results(served, covers, tmp_path):
    source = tmp_path / "weekly.csv"
    rows = [("bo", url, "2025-01-01") for url in covers[:3]]
    rows += [("cy", covers[5], "2025-01-02"), ("cy", "http://127.0.0.1:9/missing.jpg", "")]
    source.write_text(csv_text(rows) + "no-url-row\n")
    done = collage(served, "submit", str(source), "--download", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed_with_failures"
    assert summary["creators"] == {"total": 2, "succeeded": 1, "partial": 1, "failed": 0}
    assert summary["rows"]["rejected"] == 1
    out = tmp_path / "out"
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    names = [p.name.split("_")[0] for p in written]  # the collages, report, sheet
    assert names == ["bo", "cy", "report", "report", "bo", "cy"], written  # then thumbs/
    report = json.loads(next((tmp_path / "out").rglob("report_*.json")).read_text())
    assert report["row_issues"][0]["line"] == 7
    # The progress line, written to a pipe: whole lines, the map's counts, the final status.
    assert "uploaded s3://" in done.stderr and "2/2 creators" in done.stderr
    assert "\r" not in done.stderr
    said = done.stderr.rstrip().splitlines()
    assert said[-2] == "collage: 6 objects written under " + str(tmp_path / "out")
    sheet = next((tmp_path / "out").rglob("report_*.html"))
    assert said[-1] == f"collage: contact sheet: {sheet}"


def test_submit_a_message_follows_it_by_its_message_id(served, covers, tmp_path):
    message = {
        "processing_type": "csv_data",
        "csv_data": csv_text([("dee", covers[7], "2025-01-01")]),
        "processing_config": {"rows": 1, "cols": 1},
        "output_prefix": "campaign/7",
    }
    path = tmp_path / "message.json"
    path.write_text(json.dumps(message))
    done = collage(served, "submit", "--message", str(path))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run_id"].startswith("sqs-") and summary["collages"] == 1
    assert summary["collages_at"].endswith("/sqs-trigger/campaign/7/collages/")


def test_a_duplicate_delivery_starts_one_run(served, aws, covers):
    """The same message, and the same upload event, delivered twice (SQS and EventBridge are
    at-least-once): the second delivery, made through the public Lambda API, starts nothing."""
    body = json.dumps(
        {
            "processing_type": "csv_data",
            "csv_data": csv_text([("eve", covers[8], "2025-01-01")]),
            "output_prefix": "dup",
        }
    )
    sent = aws("sqs").send_message(QueueUrl=served["ProcessingQueueUrl"], MessageBody=body)
    name = message_execution_name(sent["MessageId"])
    watched = collage(served, "watch", name)
    assert watched.returncode == 0, watched.stderr
    # The record Lambda's event source mapping would build for a second receive of it.
    record = sqs_record(
        received_message(sent["MessageId"], body, receive_count=2),
        "arn:aws:sqs:us-east-1:123456789012:collage-local-queue",
    )
    again = aws("lambda").invoke(
        FunctionName="collage-local-StartFromSqsFunction",
        Payload=json.dumps({"Records": [record]}),
    )
    assert "FunctionError" not in again
    assert json.loads(again["Payload"].read()) == {"batchItemFailures": []}

    key = "csv-files/twice.csv"
    put = aws("s3").put_object(
        Bucket=served["InputBucketName"], Key=key, Body=csv_text([("fay", covers[9], "")]).encode()
    )
    event = s3_object_created_event(served["InputBucketName"], key, 40, put["ETag"].strip('"'))
    first, second = (
        json.loads(
            aws("lambda")
            .invoke(FunctionName="collage-local-StartFromS3Function", Payload=json.dumps(event))[
                "Payload"
            ]
            .read()
        )
        for _ in range(2)
    )
    # Step Functions answers a repeated name and input with the running execution itself.
    assert first["name"] == second["name"] and first["executionArn"] == second["executionArn"]
    names = [
        e["name"]
        for e in aws("stepfunctions").list_executions(stateMachineArn=served["StateMachineArn"])[
            "executions"
        ]
    ]
    assert names.count(name) == 1 and names.count(first["name"]) == 1


def test_a_failed_run_names_its_reason(served, aws, tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("creator_name,cover_url,updated_at\n")
    done = collage(served, "submit", str(source))
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "failed"
    assert "run failed: split step: CsvFileError: CSV file has a header but no data rows" in (
        done.stderr
    )
    failed = aws("s3").list_objects_v2(Bucket=served["InputBucketName"], Prefix="failed/empty_")
    assert {Path(k["Key"]).suffix for k in failed["Contents"]} == {".csv", ".json"}


def test_refused_messages_never_start_a_run(served, aws, tmp_path):
    """submit checks a message with the starter's rules before sending it; one sent anyway is
    refused by the starter and reaches the dead-letter queue after 5 receives."""
    bad = {"processing_type": "csv_data", "csv_data": "x", "output_prefix": "p"}
    bad["processing_config"] = {"rows": 0}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    refused = collage(served, "submit", "--message", str(path))
    assert refused.returncode == 1
    assert "the message would be refused: processing_config: rows" in refused.stderr

    aws("sqs").send_message(QueueUrl=served["ProcessingQueueUrl"], MessageBody=json.dumps(bad))
    dlq, ends, landed = aws("sqs"), time.monotonic() + 30, []
    while not landed and time.monotonic() < ends:
        landed = dlq.receive_message(
            QueueUrl=served["DeadLetterQueueUrl"], WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
    assert landed and json.loads(landed[0]["Body"]) == bad


def test_an_unknown_stack_or_execution_is_named(served, tmp_path):
    source = tmp_path / "a.csv"
    source.write_text("creator_name,cover_url\n")
    missing = collage(served, "submit", str(source), "--stack", "no-such-stack")
    assert missing.returncode == 1 and "stack 'no-such-stack'" in missing.stderr
    unknown = collage(served, "watch", "no-such-run")
    assert unknown.returncode == 1 and "execution 'no-such-run'" in unknown.stderr
