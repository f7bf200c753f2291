"""The aggregate step on moto S3: every creator named, the CSV parked, the report's fields."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from collage.aggregate import finish_run
from collage.config import ProcessingConfig
from collage.contracts import AggregateEvent, CreatorResult
from tests.support.s3_faults import S3Faults, fast_waits, moto_stack_buckets

RUN = {
    "id": "covers-0123456789",
    "trigger": "s3",
    "source_bucket": "hs-input",
    "source_key": "csv-files/daily/covers.csv",
    "csv_name": "covers",
    "timestamp": "20250119T103000Z",
    "output_prefix": "s3-trigger/csv-files/daily/covers/collages/",
    "temp_prefix": "runs/covers-0123456789/",
}
SPLIT = {
    "items_key": "runs/covers-0123456789/items.json",
    **{
        "rows": 5,
        "rows_rejected": 0,
        "row_warnings": 1,
        "creators": 3,
        "covers": 5,
        "covers_cut": 0,
    },
}
CONFIG = {"rows": 5, "cols": 7}
REPORT = "s3-trigger/csv-files/daily/covers/collages/report_20250119T103000Z.json"
ARCHIVED = "archive/daily/covers_20250119T103000Z.csv"
FAILED = "failed/daily/covers_20250119T103000Z.csv"
MAP_ERROR = {
    "Error": "States.ExceedToleratedFailureThreshold",
    "Cause": "The specified tolerated failure threshold was exceeded",
}


@pytest.fixture
def buckets(monkeypatch) -> Iterator[dict[str, str]]:
    with moto_stack_buckets(monkeypatch) as names:
        names.store.put_bytes(
            names["input"], RUN["source_key"], b"creator_name,cover_url\n", "text/csv"
        )
        temp = RUN["temp_prefix"]
        creators = b'["alice","alice"]\n["bob","bob"]\n["a/b","a_b-1234abcd"]\n'
        names.store.put_bytes(names["temp"], f"{temp}creators.jsonl", creators, "text/plain")
        issue = {"line": 4, "severity": "warning", "creator": "x", "message": "duplicate"}
        names.store.put_json(names["temp"], f"{temp}row-issues.json", [issue])
        yield names


def record(creator: str, name: str, status: str, ok: int, failed: int = 0) -> dict:
    base = CreatorResult.failed(creator, name, "").model_dump(mode="json")
    key = f"{RUN['output_prefix']}{name}_{RUN['timestamp']}.jpg"
    return {
        **base,
        "status": status,
        "error": None,
        "collages": [key],
        "covers": ok + failed,
        "covers_ok": ok,
        "covers_failed": failed,
        "failures": [{"line": 3, "url": "https://x/1.jpg", "code": "http_status", "error": "404"}]
        * failed,
        "bytes_downloaded": 1000 * ok,
    }


def store(buckets: dict[str, str], *records: dict) -> None:
    for item in records:
        buckets.store.put_json(
            buckets["temp"], f"{RUN['temp_prefix']}results/{item['name']}.json", item
        )


def finish(buckets, split=SPLIT, error=None, failed_stage=None, map_result=None) -> dict:
    extra = {f"{failed_stage}_error": error} if error else {}  # where the Catch puts it
    return _finish_run(buckets, RUN, split=split, map_result=map_result, **extra)


def test_missing_results_are_named_failed_with_the_reason(buckets):
    store(buckets, record("alice", "alice", "ok", 3), record("bob", "bob", "partial", 1, 1))

    summary = finish(buckets)

    report = buckets.store.get_json(buckets["output"], REPORT)
    assert [(r["creator"], r["status"]) for r in report["creators"]] == [
        ("alice", "ok"),
        ("bob", "partial"),
        ("a/b", "failed"),
    ]
    assert report["creators"][2]["error"] == "the collage task did not record a result"
    assert report["creators"][2]["name"] == "a_b-1234abcd"
    assert summary["status"] == report["status"] == "completed_with_failures"
    assert summary["creators"] == {"total": 3, "succeeded": 1, "partial": 1, "failed": 1}
    assert summary["covers"] == {"downloaded": 4, "failed": 1, "cut": 0, "bytes": 4000}
    assert summary["collages"] == 2
    assert summary["rows"] == {"used": 5, "rejected": 0, "warnings": 1}


def test_a_successful_run_archives_the_csv_and_reports_every_field(buckets):
    store(
        buckets,
        record("alice", "alice", "ok", 3),
        record("bob", "bob", "ok", 1),
        record("a/b", "a_b-1234abcd", "ok", 1),
    )

    summary = finish(buckets)

    assert buckets.store.list_keys(buckets["input"], "") == [ARCHIVED]
    report = buckets.store.get_json(buckets["output"], REPORT)
    assert set(report) == {
        "run_id",
        "status",
        "error",
        "superseded",
        "trigger",
        "source",
        "csv",
        "timestamp",
        "finished_at",
        "config",
        "totals",
        "row_issues",
        "row_issues_unlisted",
        "row_issues_all",
        "creators",
    }
    assert report["run_id"] == RUN["id"] and report["status"] == "succeeded"
    assert report["error"] is None and report["trigger"] == "s3"
    assert report["superseded"] is None
    assert report["source"] == "s3://hs-input/csv-files/daily/covers.csv"
    assert report["csv"] == summary["csv"] == f"s3://hs-input/{ARCHIVED}"
    assert report["config"] == {**ProcessingConfig().to_dict(), **CONFIG}
    assert report["timestamp"] == RUN["timestamp"]
    assert report["row_issues"] == [
        {"line": 4, "severity": "warning", "creator": "x", "message": "duplicate"}
    ]
    assert report["row_issues_unlisted"] == 0 and report["row_issues_all"] is None
    assert summary["report"] == f"s3://hs-output/{REPORT}"
    assert summary["collages_at"] == f"s3://hs-output/{RUN['output_prefix']}"
    sheet = REPORT.removesuffix(".json") + ".html"  # the contact sheet: one page for 3 creators
    assert summary["sheet"] == f"s3://hs-output/{sheet}"
    # nothing else, nowhere else
    assert buckets.store.list_keys(buckets["output"], "") == [sheet, REPORT]


def test_a_failed_map_moves_the_csv_to_failed_with_an_error_report(buckets):
    store(buckets, record("alice", "alice", "ok", 3))

    summary = finish(buckets, error=MAP_ERROR, failed_stage="map")

    assert summary["status"] == "failed"
    assert buckets.store.list_keys(buckets["input"], "") == [
        FAILED,
        "failed/daily/covers_20250119T103000Z.error.json",
    ]
    reason = buckets.store.get_json(
        buckets["input"], "failed/daily/covers_20250119T103000Z.error.json"
    )
    assert reason == {
        "stage": "map",
        "reason": "States.ExceedToleratedFailureThreshold: "
        "The specified tolerated failure threshold was exceeded",
    }
    report = buckets.store.get_json(buckets["output"], REPORT)
    assert report["error"] == reason and report["csv"] == f"s3://hs-input/{FAILED}"
    # Creators without a result carry the map's reason, not a generic one.
    assert report["creators"][1]["error"] == reason["reason"]


def test_the_handler_reports_a_split_error_with_the_lambda_error_message(buckets):
    from collage.handlers.aggregate import make_handler
    from collage_tools.emulator import LambdaContext

    cause = {"errorType": "CsvFileError", "errorMessage": "CSV file is empty", "stackTrace": []}
    event = {
        "run": RUN,
        "config": CONFIG,
        "split_error": {"Error": "CsvFileError", "Cause": json.dumps(cause)},
    }

    summary = make_handler(buckets.runtime())(event, LambdaContext("aggregate", 60, 1024))

    assert summary["status"] == "failed"
    assert summary["error"] == {"stage": "split", "reason": "CsvFileError: CSV file is empty"}
    assert summary["creators"]["total"] == 0  # the split never produced creators
    assert FAILED in buckets.store.list_keys(buckets["input"], "failed/")


def test_a_retried_aggregate_keeps_the_archived_csv_and_rewrites_the_same_report(buckets):
    store(buckets, record("alice", "alice", "ok", 3))
    first = finish(buckets)
    second = finish(buckets)  # the state machine's Retry after the CSV was already moved

    assert buckets.store.list_keys(buckets["input"], "") == [ARCHIVED]
    assert second["report"] == first["report"] and second["csv"] == first["csv"]
    sheet = first["sheet"].removeprefix("s3://hs-output/")
    assert second["sheet"] == first["sheet"]
    assert buckets.store.list_keys(buckets["output"], "") == [sheet, REPORT]


def test_s3_throttling_while_reading_results_is_absorbed(buckets, monkeypatch):
    store(buckets, record("alice", "alice", "ok", 3), record("bob", "bob", "ok", 1))
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        fault = s3.add("GetObject", "/results/", times=4)
        summary = finish(buckets)
    assert fault.injected == 4 and len(waits.botocore_backoff) == 4
    assert summary["creators"]["succeeded"] == 2 and summary["creators"]["failed"] == 1


def test_a_crashed_child_is_named_with_the_error_from_the_map_result_files(buckets):
    """On AWS the ResultWriter lists failed children (Input, Error, Cause) in FAILED_n.json."""
    store(buckets, record("alice", "alice", "ok", 3), record("bob", "bob", "ok", 1))
    prefix = "map-results/0123/"
    child_input = {"run": RUN, "config": CONFIG, "item": {"creator": "a/b", "name": "a_b-1234abcd"}}
    failed_children = [
        {
            "ExecutionArn": "arn:aws:states:us-east-1:123456789012:express:x:Creators:1",
            "Input": json.dumps(child_input),
            "Error": "TransientError",
            "Cause": json.dumps({"errorMessage": "SlowDown: please reduce your request rate"}),
            "Status": "FAILED",
        }
    ]
    buckets.store.put_json(buckets["temp"], f"{prefix}FAILED_0.json", failed_children)
    manifest = {
        "DestinationBucket": buckets["temp"],
        "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:x/Creators:0123",
        "ResultFiles": {"FAILED": [{"Key": f"{prefix}FAILED_0.json", "Size": 1}], "SUCCEEDED": []},
    }
    buckets.store.put_json(buckets["temp"], f"{prefix}manifest.json", manifest)
    map_result = {
        "ResultWriterDetails": {"Bucket": buckets["temp"], "Key": f"{prefix}manifest.json"}
    }

    finish(buckets, map_result=map_result)

    report = buckets.store.get_json(buckets["output"], REPORT)
    crashed = report["creators"][2]
    assert (crashed["creator"], crashed["status"]) == ("a/b", "failed")
    assert crashed["error"] == "TransientError: SlowDown: please reduce your request rate"


def _run_with_etag(buckets, content: bytes) -> dict:
    """RUN for the upload of `content` at its key: its ETag, as the starter takes it."""
    put = buckets.store.s3.put_object(Bucket=buckets["input"], Key=RUN["source_key"], Body=content)
    return {**RUN, "source_etag": put["ETag"].strip('"')}


def _finish_run(buckets, run: dict, **extra) -> dict:
    """The run's summary, as the execution's output (JSON)."""
    event = {"run": run, "config": CONFIG, "split": SPLIT, **extra}
    summary = finish_run(
        AggregateEvent.model_validate(event),
        buckets.store,
        input_bucket=buckets["input"],
        output_bucket=buckets["output"],
        temp_bucket=buckets["temp"],
    )
    return summary.model_dump(mode="json")


def test_a_later_upload_to_the_key_is_left_for_its_own_run(buckets):
    """The split copied this run's upload; another upload replaced the key since. The run
    archives its own copy and leaves the later upload where it is."""
    run = _run_with_etag(buckets, b"creator_name,cover_url\nfirst\n")
    buckets.store.put_bytes(
        buckets["temp"], f"{RUN['temp_prefix']}source.csv", b"first content", "text/csv"
    )
    buckets.store.put_bytes(buckets["input"], RUN["source_key"], b"second content", "text/csv")

    summary = _finish_run(buckets, run)

    assert summary["csv"] == f"s3://hs-input/{ARCHIVED}"
    archived = buckets.store.s3.get_object(Bucket=buckets["input"], Key=ARCHIVED)["Body"].read()
    assert archived == b"first content"
    left = buckets.store.s3.get_object(Bucket=buckets["input"], Key=RUN["source_key"])
    assert left["Body"].read() == b"second content"


def test_a_failed_run_whose_upload_is_gone_names_no_csv(buckets):
    """The 50 ms race before: a failed run named failed/..._T.csv that did not exist."""
    run = {**RUN, "source_etag": "0" * 32}  # its upload was replaced (or removed) unread
    buckets.store.s3.delete_object(Bucket=buckets["input"], Key=RUN["source_key"])
    error = {"Error": "CsvFileError", "Cause": "CSV not found"}

    summary = _finish_run(buckets, run, split_error=error)

    assert summary["status"] == "failed" and summary["csv"] is None
    assert buckets.store.list_keys(buckets["input"], "") == []  # no .error.json about nothing


def test_a_superseded_run_parks_nothing_and_says_why(buckets):
    run = _run_with_etag(buckets, b"the later upload")
    reason = {"reason": "s3://hs-input/csv-files/daily/covers.csv was replaced by a later upload"}
    buckets.store.put_json(buckets["temp"], f"{RUN['temp_prefix']}superseded.json", reason)
    empty = {**SPLIT, "rows": 0, "row_warnings": 0, "creators": 0, "covers": 0}
    buckets.store.put_bytes(buckets["temp"], f"{RUN['temp_prefix']}creators.jsonl", b"", "x")

    summary = _finish_run(buckets, run, split=empty)

    assert summary["status"] == "superseded" and summary["csv"] is None
    assert summary["superseded"] == reason["reason"]
    report = buckets.store.get_json(buckets["output"], REPORT)
    assert report["status"] == "superseded" and report["creators"] == []
    assert buckets.store.list_keys(buckets["input"], "") == [RUN["source_key"]]  # untouched
