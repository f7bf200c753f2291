"""The split step on moto S3: map items, expected creators, row issues, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from collage import aws
from collage.config import build_config
from collage.contracts import AggregateEvent, Run, SplitResult
from collage.csv_input import CsvFileError
from collage.errors import TransientError
from collage.split_task import split_run
from tests.support.s3_faults import S3Faults, fast_waits, moto_stack_buckets

CONFIG = {"max_images_per_creator": 2}


@pytest.fixture
def buckets(monkeypatch) -> Iterator[dict[str, str]]:
    with moto_stack_buckets(monkeypatch) as names:
        yield names


def run_for(key: str) -> dict:
    return {
        "id": "covers-0123456789",
        "trigger": "s3",
        "source_bucket": "hs-input",
        "source_key": key,
        "csv_name": "covers",
        "timestamp": "20250119T103000Z",
        "output_prefix": "s3-trigger/csv-files/covers/collages/",
        "temp_prefix": "runs/covers-0123456789/",
    }


def split(buckets, run: dict, **options):
    config = build_config(CONFIG)
    result = split_run(Run(**run), config, buckets.store, temp_bucket=buckets["temp"], **options)
    return result.model_dump()  # as the state machine keeps it at $.split


def put_csv(buckets: dict[str, str], text: str, key: str = "csv-files/covers.csv") -> dict:
    buckets.store.put_bytes(buckets["input"], key, text.encode(), "text/csv")
    return run_for(key)


CSV = (
    "creator_name,cover_url,updated_at\n"
    "alice,https://cdn.example/a1.jpg,2025-01-01\n"  # 2
    "a/b,https://cdn.example/b1.jpg,\n"  # 3
    "alice,https://cdn.example/a2.jpg,2025-03-01\n"  # 4: newest, first tile
    "carol,ftp://cdn.example/c.jpg,2025-01-01\n"  # 5: rejected
    "alice,https://cdn.example/a3.jpg,2025-02-01\n"  # 6: cut (limit 2)
    "alice,https://cdn.example/a1.jpg,2025-01-01\n"  # 7: duplicate of 2
)


def test_items_expected_and_row_issues_are_written(buckets):
    from collage.naming import safe_segment

    run = put_csv(buckets, CSV)
    summary = split(buckets, run)

    assert summary == {
        "items_key": "runs/covers-0123456789/items.json",
        "rows": 4,
        "rows_rejected": 1,
        "row_warnings": 1,
        "row_issues_unlisted": 0,
        "creators": 2,
        "covers": 3,
        "covers_cut": 1,
    }
    items = buckets.store.get_json(buckets["temp"], summary["items_key"])
    assert items == [
        {
            "creator": "alice",
            "name": "alice",
            "urls": ["https://cdn.example/a2.jpg", "https://cdn.example/a3.jpg"],
            "lines": [4, 6],
            "cut": 1,
        },
        {
            "creator": "a/b",
            "name": safe_segment("a/b"),
            "urls": ["https://cdn.example/b1.jpg"],
            "lines": [3],
            "cut": 0,
        },
    ]
    creators = buckets.store.iter_lines(buckets["temp"], "runs/covers-0123456789/creators.jsonl")
    assert [json.loads(line) for line in creators] == [
        ["alice", "alice"], ["a/b", safe_segment("a/b")]
    ]  # fmt: skip
    issues = buckets.store.get_json(buckets["temp"], "runs/covers-0123456789/row-issues.json")
    assert [(i["line"], i["severity"]) for i in issues] == [(5, "error"), (7, "warning")]
    assert "scheme" in issues[0]["message"] and "line 2" in issues[1]["message"]
    assert buckets.store.list_keys(buckets["input"], "") == [
        "csv-files/covers.csv"
    ]  # left in place
    assert (
        buckets.store.head_object(buckets["temp"], "runs/covers-0123456789/row-issues.jsonl")
        is None
    )


def test_issues_past_the_listed_ones_are_all_kept_and_reach_the_report(buckets):
    from collage.aggregate import finish_run
    from collage.split import SplitLimits

    bad = "".join(f"c{n},https://cdn.example/{n}.jpg,01/0{n}/2025\n" for n in range(1, 6))
    run = put_csv(buckets, "creator_name,cover_url,updated_at\n" + bad + "x,ftp://no,\n")
    limits = SplitLimits(listed_issues=2)
    summary = split(buckets, run, limits=limits)

    assert (summary["row_warnings"], summary["rows_rejected"]) == (5, 1)
    assert summary["row_issues_unlisted"] == 4
    listed = buckets.store.get_json(buckets["temp"], "runs/covers-0123456789/row-issues.json")
    assert [issue["line"] for issue in listed] == [2, 3]

    buckets.store.put_bytes(buckets["temp"], "runs/covers-0123456789/creators.jsonl", b"", "")
    event = AggregateEvent(
        run=Run(**run), config=build_config(CONFIG), split=SplitResult(**summary)
    )
    report = finish_run(
        event, buckets.store, input_bucket=buckets["input"], output_bucket=buckets["output"],
        temp_bucket=buckets["temp"],
    )  # fmt: skip
    document = buckets.store.get_json(buckets["output"], report.report.split("/", 3)[3])
    assert [issue["line"] for issue in document["row_issues"]] == [2, 3]
    assert document["row_issues_unlisted"] == 4
    key = "s3-trigger/csv-files/covers/collages/report_20250119T103000Z_row_issues.jsonl"
    assert document["row_issues_all"] == f"s3://{buckets['output']}/{key}"
    with buckets.store.open_object(buckets["output"], key) as body:
        every = [json.loads(line) for line in body.read().decode().splitlines()]
    assert sorted(issue["line"] for issue in every) == [2, 3, 4, 5, 6, 7]
    assert {issue["severity"] for issue in every} == {"warning", "error"}
    assert all(issue["message"] for issue in every)


def test_handler_returns_every_field_the_state_machine_selects(buckets):
    from collage.handlers.split import make_handler
    from collage_tools.emulator import LambdaContext, project_root

    definition = json.loads((project_root() / "statemachine/collage_workflow.asl.json").read_text())
    selector = definition["States"]["SplitByCreator"]["ResultSelector"]
    run = put_csv(buckets, CSV)

    handler = make_handler(buckets.runtime())
    payload = handler({"run": run, "config": CONFIG}, LambdaContext("split", 60, 1024))

    selected = {field.removesuffix(".$") for field in selector}
    assert selected <= set(payload)
    assert all(isinstance(payload[field], int) for field in selected - {"items_key"})


def test_a_missing_csv_is_a_csv_file_error(buckets):
    with pytest.raises(CsvFileError, match=r"CSV not found: s3://hs-input/csv-files/gone\.csv"):
        split(buckets, run_for("csv-files/gone.csv"))
    assert buckets.store.list_keys(buckets["temp"], "") == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "CSV file is empty"),
        ("creator_name,cover_url,updated_at\n\n\n", "no data rows"),
        ("name,url\nalice,https://cdn.example/a.jpg\n", "missing creator_name, cover_url"),
    ],
)
def test_unusable_files_are_csv_file_errors(buckets, text, reason):
    run = put_csv(buckets, text)
    with pytest.raises(CsvFileError, match=reason):
        split(buckets, run)
    # The run's own copy of its CSV (the aggregate parks it), no items for the map to read.
    assert buckets.store.list_keys(buckets["temp"], "") == [f"{run['temp_prefix']}source.csv"]


def test_s3_5xx_past_retries_is_a_transient_error(buckets, monkeypatch):
    run = put_csv(buckets, CSV)
    with fast_waits(monkeypatch), S3Faults() as s3:  # the run copies its CSV: heads it first
        s3.add("HeadObject", "csv-files/covers.csv", status=503, code="ServiceUnavailable")
        with pytest.raises(TransientError, match=r"ServiceUnavailable|503"):
            split(buckets, run)
    assert s3.count("HeadObject") == aws.TOTAL_ATTEMPTS


def test_s3_throttling_on_the_items_upload_is_absorbed(buckets, monkeypatch):
    run = put_csv(buckets, CSV)
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        fault = s3.add("PutObject", "/items.json", times=2)
        summary = split(buckets, run)
    assert fault.injected == 2 and len(waits.botocore_backoff) == 2
    assert len(buckets.store.get_json(buckets["temp"], summary["items_key"])) == 2


@pytest.mark.parametrize("filler", ["p", '"', "\\"], ids=["plain", "quote", "backslash"])
def test_every_map_child_input_fits_the_step_functions_payload_limit(buckets, filler):
    """Issue 22, item 4: a map child's input, `{"run", "config", "item"}` as the ASL's
    ItemSelector builds it, at most 262,144 bytes, whatever the URLs hold and however long
    the CSV's key; 100 plain 2,048-character URLs fit whole (208 KB)."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["creator_name", "cover_url", "updated_at"])
    for n in range(100):
        writer.writerow(["ann", f"https://x.example/{n:03d}/" + filler * 2025, "2025-01-01"])
    key = "csv-files/" + "é" * 400 + ".csv"  # a long, non-ASCII key: a larger envelope
    run = put_csv(buckets, text.getvalue(), key)
    config = build_config({"max_images_per_creator": 100})

    result = split_run(Run(**run), config, buckets.store, temp_bucket=buckets["temp"]).model_dump()

    if filler == "\\":  # refused rows since the split checks URLs with url_guard's rule
        issues = buckets.store.get_json(buckets["temp"], f"{run['temp_prefix']}row-issues.json")
        assert buckets.store.get_json(buckets["temp"], result["items_key"]) == []
        assert result["rows_rejected"] == 100
        assert {i["message"] for i in issues} == {"cover_url contains a backslash"}
        return
    (item,) = buckets.store.get_json(buckets["temp"], result["items_key"])
    child = {"run": run, "config": config.to_dict(), "item": item}
    size = len(json.dumps(child, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= 262_144
    issues = buckets.store.get_json(buckets["temp"], f"{run['temp_prefix']}row-issues.json")
    if filler == "p":
        assert len(item["urls"]) == 100 and result["covers_cut"] == 0 and issues == []
    else:
        assert size > 262_144 - 8 * 1024  # cut only as far as needed
        assert result["covers_cut"] == 100 - len(item["urls"]) == len(issues) > 0
        assert {i["creator"] for i in issues} == {"ann"}
        assert all("payload limit" in i["message"] for i in issues)
