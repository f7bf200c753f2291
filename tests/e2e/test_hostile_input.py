"""Hostile input through the whole workflow: odd CSVs, hostile creator names, bad messages.

Row problems are reported with their line and the rest of the file proceeds; unusable files
fail the run and land in failed/ with the reason; hostile names give safe, distinct keys under
the run's output prefix; bad SQS messages fail alone and end in the dead-letter queue.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from collage_tools.covers import encode, make_cover
from tests.support.workflow import (
    collage_keys,
    csv_text,
    executions,
    image,
    keys,
    read,
    read_json,
    run_csv,
)

pytestmark = pytest.mark.e2e

TILE = (216, 384)


def report_of(stack, described: dict) -> dict:
    key = json.loads(described["output"])["report"].split("/", 3)[3]
    return read_json(stack, "OutputBucket", key)


def colour(n: int) -> tuple[int, int, int]:
    return (40 + (n * 53) % 200, 40 + (n * 97) % 200, 40 + (n * 151) % 200)


def test_a_hostile_csv_reports_each_bad_row_by_line_and_renders_the_rest(local_stack, server):
    urls = [server.add(f"/c/{n}.jpg", make_cover(n, TILE)).encode() for n in range(7)]
    long_url = b"https://cdn.example/" + b"a" * 3000 + b".jpg"
    lines = [
        b"\xef\xbb\xbfcover_url,notes,creator_name,extra",  # 1: BOM, reordered, no updated_at
        urls[0] + b',"hello, world",alice,x',  # 2: quoted comma
        b"",  # 3: blank
        urls[1] + b',"two\r\nline note",alice,',  # 4-5: a quote not closed on its line
        urls[2] + b',,"bob, the builder"',  # 6: quoted comma in the name
        urls[0] + b",again,alice,y",  # 7: duplicate of line 2
        b"not-a-url,,carol,",  # 8
        b"ftp://cdn.example/c.jpg,,carol,",  # 9
        urls[3] + b",,dave \xff\xfe,",  # 10: invalid UTF-8
        urls[4] + b",," + b"x" * 600 + b",",  # 11: name too long
        long_url + b",,erin,",  # 12: URL too long
        urls[5] + b",,,",  # 13: no creator
        b"   ",  # 14: whitespace only
        urls[5] + b",,eve",  # 15: fewer fields than the header, still enough
        urls[5],  # 16: too few fields
        urls[6] + b',"' + b"z" * 1_100_000 + b'",fay,',  # 17: a line over the 1 MiB limit
        urls[6] + b",,fay,",  # 18: and the file goes on
    ]
    data = b"\r\n".join(lines) + b"\r\n"

    started = local_stack.upload_csv(data, "csv-files/hostile.csv")
    described = local_stack.wait(started["name"], timeout=120)

    assert described["status"] == "SUCCEEDED"
    report = report_of(local_stack, described)
    issues = [(i["line"], i["severity"]) for i in report["row_issues"]]
    assert issues == [
        (4, "error"),
        (5, "error"),
        (7, "warning"),
        (8, "error"),
        (9, "error"),
        (10, "error"),
        (11, "error"),
        (12, "error"),
        (13, "error"),
        (16, "error"),
        (17, "error"),
    ]
    messages = {i["line"]: i["message"] for i in report["row_issues"]}
    assert "duplicate of line 2" in messages[7]
    assert "scheme" in messages[8] and "scheme" in messages[9]
    assert "not valid UTF-8" in messages[10]
    assert "creator_name longer than" in messages[11]
    assert "cover_url longer than" in messages[12]
    assert "missing creator_name" in messages[13]
    assert "fields" in messages[16]
    assert messages[4] == "malformed CSV record: a quoted field is not closed on its line"
    assert messages[5] == "missing creator_name"  # the line after it is read on its own
    assert messages[17] == "line longer than 1,048,576 bytes"
    values = {i["line"]: (i["column"], i["value"]) for i in report["row_issues"]}
    assert values[8] == ("cover_url", "not-a-url") and values[10] == (
        "creator_name",
        "dave \ufffd\ufffd",
    )
    assert report["totals"]["rows"] == {"used": 4, "rejected": 10, "warnings": 1}
    records = {r["creator"]: r for r in report["creators"]}
    assert {name: r["status"] for name, r in records.items()} == {
        "alice": "ok",
        "bob, the builder": "ok",
        "eve": "ok",
        "fay": "ok",
    }
    assert records["alice"]["covers"] == 1  # line 2; line 4 never swallowed the lines after it
    assert len(collage_keys(local_stack)) == 4
    (archived,) = keys(local_stack, "InputBucket", "archive/")
    assert read(local_stack, "InputBucket", archived) == data  # archived byte for byte


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "CSV file is empty"),
        (b"\xef\xbb\xbf", "CSV file is empty"),
        (b"creator_name,cover_url,updated_at\r\n\r\n  \r\n", "no data rows"),
        (b"name,url\nalice,https://cdn.example/a.jpg\n", "missing creator_name, cover_url"),
    ],
    ids=["empty", "bom-only", "header-and-blank-lines", "wrong-header"],
)
def test_unusable_files_fail_the_run_into_failed_with_the_reason(local_stack, data, reason):
    started = local_stack.upload_csv(data, "csv-files/bad/input.csv")
    described = local_stack.wait(started["name"], timeout=120)

    assert described["status"] == "FAILED"
    inputs = keys(local_stack, "InputBucket")
    failed_csv = [k for k in inputs if k.startswith("failed/bad/input_") and k.endswith(".csv")]
    errors = [k for k in inputs if k.startswith("failed/bad/input_") and k.endswith(".error.json")]
    assert len(inputs) == 2 and len(failed_csv) == 1 and len(errors) == 1
    assert read(local_stack, "InputBucket", failed_csv[0]) == data
    error = read_json(local_stack, "InputBucket", errors[0])
    assert error["stage"] == "split" and reason in error["reason"]
    assert error["reason"].startswith("CsvFileError: ")
    # The report and its contact sheet, no collages.
    sheet, report_key = keys(local_stack, "OutputBucket")
    assert report_key.endswith(".json") and sheet == report_key.removesuffix("json") + "html"
    report = read_json(local_stack, "OutputBucket", report_key)
    assert report["status"] == "failed" and report["error"] == error
    assert report["csv"].endswith(failed_csv[0])


def test_hostile_creator_names_get_safe_distinct_keys_under_the_run_prefix(local_stack, server):
    names = [
        "../../x",
        "a/b",
        "a\\b",
        "a_b",
        "..",
        "/etc/passwd",
        "tab\there\x07bell",
        "bidi\u202eevil",
        "n" * 500,
        "n" * 499 + "m",
        "玲奈 さくら",
        "Zoë",
        "zoë",  # differs by case only: distinct keys on a case-insensitive disk too
        "z\u200boë",  # a zero-width space
        "con",  # a Windows device name
        "%2e%2e%2fencoded",
        "report",
    ]
    urls = [
        server.add(f"/n/{n}.jpg", encode(Image.new("RGB", TILE, colour(n)), "jpeg"))
        for n in range(len(names))
    ]
    rows = [(name, url, "2025-01-01") for name, url in zip(names, urls, strict=True)]

    _, described = run_csv(local_stack, csv_text(rows), "csv-files/names.csv")

    assert described["status"] == "SUCCEEDED"
    report = report_of(local_stack, described)
    assert [r["creator"] for r in report["creators"]] == names  # shown as written
    assert all(r["status"] == "ok" for r in report["creators"])
    prefix = "s3-trigger/csv-files/names/collages/"
    output = keys(local_stack, "OutputBucket")
    collages = collage_keys(local_stack)
    # a collage and its thumbnail a creator, the report and its contact sheet
    assert len(collages) == len(names) and len(output) == 2 * len(names) + 2
    for key in output:
        segment = key.removeprefix(prefix).removeprefix("thumbs/")
        assert key.startswith(prefix) and "/" not in segment and "\\" not in segment
        assert ".." not in segment and all(ord(c) >= 32 for c in segment)
        assert len(segment) < 160
    # Each creator's collage shows its own cover: nothing overwrote anything.
    for n, record in enumerate(report["creators"]):
        (key,) = record["collages"]
        with image(local_stack, key) as collage:
            got = collage.getpixel((108, 192))
        assert max(abs(a - b) for a, b in zip(got, colour(n), strict=True)) < 12, record
    assert any("玲奈_さくら" in key for key in collages)  # unicode stays readable
    assert any(key.startswith(prefix + "Zoë-") for key in collages)  # capitals: a hash tail
    assert len({key.casefold() for key in collages}) == len(names)
    temp = keys(local_stack, "TempBucket", "runs/")
    results = [k for k in temp if "/results/" in k]
    assert len(results) == len(names)


BAD_MESSAGES = {
    "invalid JSON": ("{not json", "not valid JSON"),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "missing csv_data": (
        {"processing_type": "csv_data", "output_prefix": "x/"},
        "csv_data: Field required",
    ),
    "csv_data not a string": (
        {"processing_type": "csv_data", "csv_data": 42, "output_prefix": "x/"},
        "csv_data: Input should be a valid string, got 42",
    ),
    "unknown type": (
        {"processing_type": "video", "csv_data": "a", "output_prefix": "x/"},
        "processing_type: Input should be 'csv_data', got 'video'",
    ),
    "missing prefix": (
        {"processing_type": "csv_data", "csv_data": "a,b\n"},
        "output_prefix: Field required",
    ),
    "rows 0": (
        {"processing_config": {"rows": 0}},
        "rows: Input should be greater than or equal to 1, got 0",
    ),
    "quality 500": (
        {"processing_config": {"quality": 500}},
        "quality: Input should be less than or equal to 100, got 500",
    ),
    "max_workers 10000": (
        {"processing_config": {"max_workers": 10000}},
        "max_workers: Input should be less than or equal to 64",
    ),
}


def message_body(spec: object, csv_data: str) -> str:
    if isinstance(spec, str):
        return spec
    if "processing_config" in spec:  # otherwise valid: only the config is wrong
        spec = {
            "processing_type": "csv_data",
            "csv_data": csv_data,
            "output_prefix": "bad/",
            **spec,
        }
    return json.dumps(spec)


def test_bad_messages_fail_alone_then_reach_the_dead_letter_queue(local_stack, server, caplog):

    good_csv = csv_text([("gail", server.add("/g.jpg", make_cover(1, TILE)), "2025-01-01")])
    good_id = local_stack.send_message(
        json.dumps({"processing_type": "csv_data", "csv_data": good_csv, "output_prefix": "good/"})
    )
    bad_ids = {
        local_stack.send_message(message_body(spec, good_csv)): label
        for label, (spec, _) in BAD_MESSAGES.items()
    }

    first = local_stack.deliver_messages()
    assert {d["message_id"]: d["started"] for d in first} == {
        good_id: True,
        **{message_id: False for message_id in bad_ids},
    }
    for _ in range(4):  # maxReceiveCount 5: received four times more, refused again
        again = local_stack.deliver_messages()
        assert sorted(d["message_id"] for d in again) == sorted(bad_ids)
        assert not any(d["started"] for d in again)
    assert local_stack.deliver_messages() == []  # the 6th receive moves them to the DLQ

    sqs = local_stack.client("sqs")
    dead = sqs.receive_message(
        QueueUrl=local_stack.names["ProcessingDeadLetterQueue"], MaxNumberOfMessages=10
    )["Messages"]
    assert sorted(m["MessageId"] for m in dead) == sorted(bad_ids)
    executions = local_stack.store.sfn.list_executions(
        stateMachineArn=local_stack.names["CollageStateMachine"]
    )["executions"]
    assert len(executions) == 1 and executions[0]["name"].startswith(f"sqs-{good_id}")
    assert local_stack.wait(executions[0]["name"], timeout=120)["status"] == "SUCCEEDED"
    assert len(keys(local_stack, "InputBucket", "archive/sqs-inbox/")) == 1

    refused = [r for r in caplog.records if r.getMessage() == "message refused"]
    reasons = {r.message_id: r.reason for r in refused}  # the starter's log names each reason
    assert set(reasons) == set(bad_ids) and len(refused) == 5 * len(bad_ids)  # one a receive
    for message_id, label in bad_ids.items():
        assert BAD_MESSAGES[label][1] in reasons[message_id], label


def test_an_oversized_message_is_refused_and_the_rest_of_its_batch_starts(local_stack, server):
    from collage_tools.emulator import received_message, sqs_record

    def record(message_id: str, body: str) -> dict:
        queue = "arn:aws:sqs:us-east-1:123456789012:collage-local-queue"
        return sqs_record(received_message(message_id, body), queue)

    url = server.add("/ann.jpg", make_cover(0, (54, 96)))  # the run it starts fetches only this
    csv_data = f"creator_name,cover_url\nann,{url}\n"
    base = {"processing_type": "csv_data", "output_prefix": "big/"}
    huge = json.dumps({**base, "csv_data": csv_data + "x" * (1024 * 1024)})
    fine = json.dumps({**base, "csv_data": csv_data})
    response = local_stack.invoke(
        "StartFromSqsFunction", {"Records": [record("m-huge", huge), record("m-fine", fine)]}
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-huge"}]}
    # One run started; let it finish inside this test (nothing of it outlives the stack). Its
    # CSV is then archived: checking the inbox before would race the run's aggregator.
    (execution,) = executions(local_stack)
    assert local_stack.wait(execution["name"], timeout=120)["status"] == "SUCCEEDED"
    assert len(keys(local_stack, "InputBucket", "archive/sqs-inbox/")) == 1
    assert keys(local_stack, "InputBucket", "sqs-inbox/") == []


HOSTILE_PREFIXES = {
    "../../escape": "output_prefix: has a '..' segment",
    "/absolute": "output_prefix: is absolute (starts with /)",
    "a//b": "output_prefix: has an empty folder name",
    "nul\x00byte": "output_prefix: contains an unprintable character U+0000 at position 3",
    "bell\x07": "output_prefix: contains an unprintable character U+0007 at position 4",
    "back\\..\\slash": "output_prefix: contains a backslash at position 4",
    "long/" + "x" * 300: "output_prefix: longer than 256 bytes of UTF-8 (305)",
    "./": "output_prefix: names no folder",
}


def test_hostile_output_prefixes_and_sizes_are_refused_and_the_good_message_runs(
    local_stack, server, caplog
):
    good_csv = csv_text([("hana", server.add("/h.jpg", make_cover(2, TILE)), "2025-01-01")])

    def body(prefix: str, config: dict | None = None) -> str:
        document = {"processing_type": "csv_data", "csv_data": good_csv, "output_prefix": prefix}
        return json.dumps({**document, "processing_config": config or {}})

    good_id = local_stack.send_message(body("campaigns/2025-01"))
    refused = {local_stack.send_message(body(p)): reason for p, reason in HOSTILE_PREFIXES.items()}
    huge = {"rows": 20, "cols": 20, "tile_width": 2048, "tile_height": 2048}
    refused[local_stack.send_message(body("big/", huge))] = (
        "processing_config: rows x cols x tile_width x tile_height = 20 x 20 x 2048 x 2048"
    )

    delivered = local_stack.deliver_messages()  # one batch, as Lambda's event source mapping

    assert {d["message_id"]: d["started"] for d in delivered} == {
        good_id: True,
        **dict.fromkeys(refused, False),
    }
    logged = [r for r in caplog.records if r.getMessage() == "message refused"]
    reasons = {r.message_id: r.reason for r in logged}
    assert set(reasons) == set(refused)
    for message_id, reason in refused.items():
        assert reasons[message_id].startswith(reason), reasons[message_id]
    (execution,) = executions(local_stack)
    assert execution["name"].startswith(f"sqs-{good_id}")
    assert local_stack.wait(execution["name"], timeout=120)["status"] == "SUCCEEDED"
    output = keys(local_stack, "OutputBucket")
    assert len(output) == 4  # hana's collage, its thumbnail, the report and its sheet: no more
    assert all(k.startswith("sqs-trigger/campaigns/2025-01/collages/") for k in output), output
    (inbox,) = keys(local_stack, "InputBucket", "archive/sqs-inbox/")  # only the good one parked
    assert execution["name"] in inbox
