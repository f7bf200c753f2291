"""Regression tests for bugs the fault suite found (slow drip, key collisions, all rows
rejected, restarted runs, S3 faults in the aggregate step)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from collage_tools.covers import encode, make_cover
from tests.e2e.test_hostile_input import report_of
from tests.e2e.test_idempotency import NAMES, etags, restart, rows
from tests.e2e.test_idempotency import server as server
from tests.integration.test_faults_workflow import TILE, by_creator, run_message
from tests.integration.test_handlers_aggregate import buckets as buckets
from tests.support.s3_faults import S3Faults, fast_waits
from tests.support.workflow import csv_text, image, keys, run_csv

pytestmark = pytest.mark.e2e


# -> tests/integration/test_faults_workflow.py  (bug 1: download.py FetchPolicy.from_config)
def test_a_slow_drip_is_cut_at_the_configured_timeout(local_stack, server):
    good = server.add("/g/0.jpg", make_cover(0, TILE))
    server.add("/f/drip.jpg", make_cover(1, TILE))
    drip = server.fault("/f/drip.jpg", "slow", bytes_per_second=20)  # whole cover: minutes
    rows_ = [("slow", good, "2025-01-02"), ("slow", drip, "2025-01-01")]
    described = run_message(local_stack, rows_, {"timeout": 2, "max_retries": 1}, "drip/")

    record = by_creator(report_of(local_stack, described))["slow"]
    assert record["status"] == "partial"
    assert [(f["line"], f["code"]) for f in record["failures"]] == [(3, "timeout")]
    # Cut after seconds at 20 B/s (~80 bytes), not after a minute (~1200 bytes).
    assert server.bytes_sent["/f/drip.jpg"] < 300


# -> tests/e2e/test_hostile_input.py  (bug 2: naming.py safe_segment)
def test_a_name_spelled_like_another_names_safe_form_does_not_overwrite_it(local_stack, server):
    from collage.naming import safe_segment

    red = server.add("/red.jpg", encode(Image.new("RGB", TILE, (220, 20, 20)), "jpeg"))
    blue = server.add("/blue.jpg", encode(Image.new("RGB", TILE, (20, 20, 220)), "jpeg"))
    impostor = safe_segment("a/b")  # a clean name equal to the key segment of "a/b"
    rows_ = [("a/b", red, ""), (impostor, blue, "")]
    _, described = run_csv(local_stack, csv_text(rows_), "csv-files/impostor.csv")

    report = report_of(local_stack, described)
    assert [r["creator"] for r in report["creators"]] == ["a/b", impostor]
    collages = [r["collages"][0] for r in report["creators"]]
    assert len(set(collages)) == 2
    for key, want in zip(collages, [(220, 20, 20), (20, 20, 220)], strict=True):
        with image(local_stack, key) as collage:
            got = collage.getpixel((108, 192))
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 12


# -> tests/e2e/test_hostile_input.py  (bug 3: aggregate.py finish_run status)
def test_a_csv_whose_rows_are_all_rejected_says_so(local_stack):
    rows_ = [("x", "nope", ""), ("y", "ftp://cdn.example/a.jpg", ""), ("", "https://a/b.jpg", "")]
    _, described = run_csv(local_stack, csv_text(rows_), "csv-files/all-bad.csv")

    summary = json.loads(described["output"])
    assert summary["creators"]["total"] == 0 and summary["rows"]["rejected"] == 3
    report = report_of(local_stack, described)
    assert [i["line"] for i in report["row_issues"]] == [2, 3, 4]
    assert not [k for k in keys(local_stack, "OutputBucket") if k.endswith(".jpg")]
    # Nothing was produced from this CSV: the run must not say "succeeded".
    assert summary["status"] == report["status"] == "completed_with_failures"


# -> tests/e2e/test_idempotency.py  (bug 4: split_task.py reads only csv-files/)
def test_restarting_a_finished_run_rewrites_the_same_keys_and_keeps_its_report(local_stack, server):
    _, first = run_csv(local_stack, csv_text(rows(server)), "csv-files/again.csv")
    assert first["status"] == "SUCCEEDED"
    before, hits = etags(local_stack), server.hits.copy()
    inputs = keys(local_stack, "InputBucket")

    second = restart(local_stack, first, "again-restarted")

    assert second["status"] == "SUCCEEDED"
    assert server.hits == hits  # every creator has its result: nothing downloaded again
    assert etags(local_stack) == before  # the same collage keys, untouched, none added
    assert keys(local_stack, "InputBucket") == inputs  # one archived CSV, nothing in failed/
    report = report_of(local_stack, second)
    assert report["status"] == "succeeded"
    assert [r["creator"] for r in report["creators"]] == NAMES


# -> tests/integration/test_faults_workflow.py  (bug 5: aggregate never raises TransientError)
def test_an_s3_outage_during_the_aggregate_is_retried_by_the_state_machine(
    inline_stack, server, monkeypatch
):
    local_stack = inline_stack  # S3Faults reach this process's clients only
    from collage.aws import TOTAL_ATTEMPTS

    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        fault = s3.add("CopyObject", "archive/", times=TOTAL_ATTEMPTS)  # one invocation's worth
        _, described = run_csv(local_stack, csv_text(rows(server)), "csv-files/blip.csv")

    assert fault.injected == TOTAL_ATTEMPTS and len(waits.state_machine_retry) == 1
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["status"] == "succeeded"
    assert keys(local_stack, "InputBucket", "csv-files/") == []
    assert len(keys(local_stack, "InputBucket", "archive/blip_")) == 1


# -> tests/integration/test_handlers_aggregate.py  (bug 3, handler level; uses that file's
#    fixtures and helpers: buckets, store, record, finish, SPLIT)
def test_rejected_rows_make_a_run_completed_with_failures(buckets):
    from tests.integration.test_handlers_aggregate import SPLIT, finish, record, store

    store(
        buckets,
        record("alice", "alice", "ok", 3),
        record("bob", "bob", "ok", 1),
        record("a/b", "a_b-1234abcd", "ok", 1),
    )
    summary = finish(buckets, split={**SPLIT, "rows_rejected": 2})
    assert summary["status"] == "completed_with_failures"
