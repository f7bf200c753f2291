"""Faults through the whole workflow (real ASL on moto, real handlers, loopback covers).

Each test asserts what the run report says (creators[].status, failures[].code/line/url,
totals) and what was or was not written. Downloader-level faults are tested one by one in
test_download_faults.py; here they meet the state machine, the map and the aggregator.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from collage_tools.cover_server import CoverServer
from collage_tools.covers import encode, make_cover
from tests.support.s3_faults import S3Faults, fast_waits
from tests.support.workflow import csv_text, image, is_collage, keys, read_json, run_csv

pytestmark = pytest.mark.e2e

TILE = (216, 384)
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


@pytest.fixture
def server() -> Iterator[CoverServer]:
    with CoverServer() as cover_server:  # one per test: hit counters start at 0
        yield cover_server


def solid(rgb: tuple[int, int, int]) -> bytes:
    return encode(Image.new("RGB", TILE, rgb), "jpeg")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def run_message(stack: Any, rows: list[tuple[str, str, str]], config: dict, prefix: str) -> dict:
    """Start a run through an SQS message (per-run processing_config); wait for it."""

    body = {
        "processing_type": "csv_data",
        "csv_data": csv_text(rows),
        "processing_config": config,
        "output_prefix": prefix,
    }
    message_id = stack.send_message(json.dumps(body))
    assert stack.deliver_messages() == [{"message_id": message_id, "started": True}]
    executions = stack.store.sfn.list_executions(
        stateMachineArn=stack.names["CollageStateMachine"]
    )["executions"]
    name = next(e["name"] for e in executions if e["name"].startswith(f"sqs-{message_id}"))
    return stack.wait(name, timeout=120)


def report_of(stack: Any, described: dict) -> dict:
    summary = json.loads(described["output"])
    key = summary["report"].split("/", 3)[3]
    return read_json(stack, "OutputBucket", key)


def by_creator(report: dict) -> dict[str, dict]:
    return {record["creator"]: record for record in report["creators"]}


def near(got: tuple[int, ...], want: tuple[int, int, int], tolerance: int = 16) -> bool:
    return max(abs(a - b) for a, b in zip(got, want, strict=True)) < tolerance


def test_one_csv_of_mixed_cover_faults_names_each_and_renders_the_rest(local_stack, server):
    good = [server.add(f"/g/{n}.jpg", make_cover(n, TILE)) for n in range(6)]
    server.add("/f/busy.jpg", solid(RED))
    busy = server.fault("/f/busy.jpg", "status", code=429, retry_after=1, times=1)
    server.add("/f/flaky.jpg", solid(GREEN))
    flaky = server.fault("/f/flaky.jpg", "status", code=500, times=1)
    server.add("/f/cut.jpg", make_cover(50, TILE))
    faults = {  # line in the CSV -> (URL, expected code)
        7: (server.url("/f/missing.jpg"), "http_status"),
        8: (server.fault("/f/reset.jpg", "reset"), "connect_failed"),
        9: (server.fault("/f/cut.jpg", "truncate"), "truncated"),
        10: (server.fault("/f/login.jpg", "html"), "not_an_image"),
        11: (server.fault("/f/huge.jpg", "huge", declare_length=False), "too_large"),
        12: (server.add("/f/bomb.png", png_claiming(60000, 60000), "image/png"), "too_many_pixels"),
        13: (server.add("/f/corrupt.jpg", make_cover(51, TILE)[:700]), "corrupt_image"),
        14: (
            server.fault("/f/loop.jpg", "redirect", hops=8, to="/g/never.jpg"),
            "too_many_redirects",
        ),
    }
    mixed = [busy, flaky, *(url for url, _ in faults.values()), good[5]]
    rows = [("good1", url, f"2025-01-{10 - n:02d}") for n, url in enumerate(good[:3])]  # 2-4
    rows += [("mixed", url, f"2025-02-{28 - n:02d}") for n, url in enumerate(mixed)]  # 5-15
    doomed = [server.fault("/f/gone.jpg", "status", code=410), server.fault("/f/page", "html")]
    rows += [("doomed", url, "2025-01-01") for url in doomed]  # 16-17
    rows += [("good2", url, "2025-01-01") for url in good[3:5]]  # 18-19
    config = {"rows": 3, "cols": 4, "timeout": 2, "max_retries": 1, "max_image_bytes": 1_000_000}

    described = run_message(local_stack, rows, config, "faults/")

    assert described["status"] == "SUCCEEDED"  # failed covers and creators do not fail a run
    report = report_of(local_stack, described)
    assert report["status"] == "completed_with_failures" and report["error"] is None
    records = by_creator(report)
    assert {name: r["status"] for name, r in records.items()} == {
        "good1": "ok",
        "mixed": "partial",
        "doomed": "failed",
        "good2": "ok",
    }
    got = {f["line"]: (f["url"], f["code"]) for f in records["mixed"]["failures"]}
    assert got == faults
    assert all(f["error"] for f in records["mixed"]["failures"])
    assert records["doomed"]["error"] == "no cover could be rendered"
    assert [(f["line"], f["code"]) for f in records["doomed"]["failures"]] == [
        (16, "http_status"),
        (17, "not_an_image"),
    ]
    assert report["totals"]["creators"] == {"total": 4, "succeeded": 2, "partial": 1, "failed": 1}
    assert report["totals"]["covers"]["downloaded"] == 8
    assert report["totals"]["covers"]["failed"] == 10
    assert report["row_issues"] == []

    # Retried as configured (max_retries 1), never more; permanent errors tried once.
    hits = server.hits
    assert hits["/f/busy.jpg"] == hits["/f/flaky.jpg"] == 2
    assert hits["/f/reset.jpg"] == hits["/f/cut.jpg"] == 2
    assert hits["/f/missing.jpg"] == hits["/f/gone.jpg"] == hits["/f/login.jpg"] == 1
    assert hits["/f/loop.jpg"] == 1 and hits["/f/loop.jpg.hop5"] == 1
    assert hits["/f/loop.jpg.hop6"] == 0 and hits["/g/never.jpg"] == 0
    assert server.bytes_sent["/f/huge.jpg"] < 16 * 1024 * 1024  # cut, not read to its 64 MiB

    prefix = "sqs-trigger/faults/collages/"
    output = keys(local_stack, "OutputBucket")
    assert all(key.startswith(prefix) for key in output)
    collages = sorted(k.removeprefix(prefix).split("_")[0] for k in output if is_collage(k))
    assert collages == ["good1", "good2", "mixed"]  # the failed creator has no collage
    (mixed_key,) = records["mixed"]["collages"]
    with image(local_stack, mixed_key) as collage:
        assert collage.size == (4 * TILE[0], 3 * TILE[1])
        cells = [collage.getpixel((TILE[0] * n + 108, 250)) for n in range(3)]
    assert near(cells[0], RED) and near(cells[1], GREEN)  # 429 and 500, then rendered
    assert not near(cells[2], RED) and not near(cells[2], GREEN)  # 404 keeps a placeholder


def test_loopback_covers_are_refused_without_a_single_request(server):
    from collage_tools.emulator import LocalStack

    port = server.base_url.rsplit(":", 1)[1]
    urls = [
        server.add("/c/1.jpg", solid(RED)),
        f"http://[::1]:{port}/c/1.jpg",
        f"http://127.9.9.9:{port}/c/1.jpg",
    ]
    rows = [("ann", urls[0], "2025-01-02"), ("ann", urls[1], "2025-01-01")]
    rows += [("ben", urls[2], "2025-01-01")]
    with LocalStack(allow_loopback=False) as stack:
        _, described = run_csv(stack, csv_text(rows), "csv-files/loopback.csv")
        assert described["status"] == "SUCCEEDED"
        report = report_of(stack, described)
        output = keys(stack, "OutputBucket")

    assert server.hits.total() == 0 and server.connections == 0
    failures = [f for record in report["creators"] for f in record["failures"]]
    assert [(f["line"], f["code"]) for f in failures] == [
        (2, "address_blocked"),
        (3, "address_blocked"),
        (4, "address_blocked"),
    ]
    assert all("loopback" in f["error"] for f in failures)
    assert [r["status"] for r in report["creators"]] == ["failed", "failed"]
    assert report["status"] == "completed_with_failures"
    assert not [key for key in output if key.endswith(".jpg")]


def test_s3_throttling_and_5xx_are_absorbed_by_retries(inline_stack, server, monkeypatch):
    local_stack = inline_stack  # S3Faults reach this process's clients only
    urls = [server.add(f"/c/{n}.jpg", make_cover(n, TILE)) for n in range(6)]
    rows = [(f"c{n % 3}", url, "2025-01-01") for n, url in enumerate(urls)]
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        plan = [
            s3.add(  # the split copies its upload to the run's area, heading it first
                "HeadObject", "csv-files/throttled.csv", status=500, code="InternalError", times=2
            ),
            s3.add("PutObject", "/items.json", times=1),
            s3.add("PutObject", "/collages/c1_", times=3),
            s3.add("PutObject", "/results/", status=500, code="InternalError", times=2),
            s3.add("PutObject", "/report_", times=1),
            s3.add("CopyObject", "archive/", times=1),
        ]
        _, described = run_csv(local_stack, csv_text(rows), "csv-files/throttled.csv")

    assert [fault.injected for fault in plan] == [2, 1, 3, 2, 1, 1]
    assert described["status"] == "SUCCEEDED"
    report = report_of(local_stack, described)
    assert report["status"] == "succeeded"
    assert [r["status"] for r in report["creators"]] == ["ok", "ok", "ok"]
    assert len([k for k in keys(local_stack, "OutputBucket") if is_collage(k)]) == 3
    assert keys(local_stack, "InputBucket", "csv-files/") == []
    assert len(keys(local_stack, "InputBucket", "archive/throttled_")) == 1
    # Botocore retried every fault itself: nothing reached the state machine's Retry.
    assert len(waits.botocore_backoff) == 10 and waits.state_machine_retry == []
    assert waits.rate_limited > 0  # the SlowDowns switched on adaptive client-side limiting
    assert all(server.hits[f"/c/{n}.jpg"] == 1 for n in range(6))


def test_s3_fault_outlasting_retries_fails_only_that_creator(inline_stack, server, monkeypatch):
    local_stack = inline_stack  # S3Faults reach this process's clients only
    from collage.aws import TOTAL_ATTEMPTS

    urls = [server.add(f"/c/{n}.jpg", make_cover(n, TILE)) for n in range(5)]
    names = ["ann", "bob", "cat", "dan", "eve"]  # 1 crash in 5: below the 25% tolerance
    rows = [(name, url, "2025-01-01") for name, url in zip(names, urls, strict=True)]
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        s3.add("PutObject", "/collages/bob_")  # every time: outlasts every retry
        _, described = run_csv(local_stack, csv_text(rows), "csv-files/outage.csv")

    # TOTAL_ATTEMPTS calls per invocation (botocore's adaptive retries), and the state
    # machine ran the task 1 + 3 times (its Retry on TransientError).
    assert s3.count("PutObject", "/collages/bob_") == 4 * TOTAL_ATTEMPTS
    assert len(waits.state_machine_retry) == 3
    assert server.hits["/c/1.jpg"] == 4 and server.hits["/c/0.jpg"] == 1
    assert described["status"] == "SUCCEEDED"
    report = report_of(local_stack, described)
    records = by_creator(report)
    assert records["bob"]["status"] == "failed" and records["bob"]["collages"] == []
    assert "did not record a result" in records["bob"]["error"]
    assert [records[name]["status"] for name in names if name != "bob"] == ["ok"] * 4
    assert report["status"] == "completed_with_failures"
    assert report["totals"]["creators"]["failed"] == 1
    collages = [k for k in keys(local_stack, "OutputBucket") if is_collage(k)]
    assert len(collages) == 4 and not [k for k in collages if "/bob_" in k]
