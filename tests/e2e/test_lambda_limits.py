"""The template's MemorySize and Timeout hold in the local stack as on AWS: a collage task past
either is killed and answered with AWS's error, the state machine's Retry sees that error, and
the other creators finish (collage_tools.lambda_runtime)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from collage_tools.emulator import project_root
from tests.support.lambda_handlers import FAILING_CREATORS, SLOW_CREATORS
from tests.support.s3_faults import fast_waits
from tests.support.workflow import csv_text, keys, read_json, run_csv

pytestmark = pytest.mark.e2e


def _answers(stack):
    seen: list[tuple[str, dict]] = []
    stack.runtime.on_answer = lambda name, answer: seen.append((name, answer))
    return seen


def _report(stack, described):
    summary = json.loads(described["output"])
    bucket_key = summary["report"].removeprefix("s3://").split("/", 1)[1]
    return summary, read_json(stack, "OutputBucket", bucket_key)


def _big_png(colour: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (6000, 6000), (colour, 40, 90)).save(out, "PNG")
    return out.getvalue()


def test_a_creator_past_the_memory_size_is_killed_as_out_of_memory_and_the_rest_finish(
    local_stack, server, covers
):
    render = local_stack.function_name("RenderFunction")
    local_stack.runtime.configure(render, memory=200)  # MB; a small creator's task needs ~110
    big = [server.add(f"/big/{n}.png", _big_png(n * 40), "image/png") for n in range(4)]
    rows = [("hungry", url, "2025-01-01") for url in big]
    rows += [(f"small{n}", url, "2025-01-01") for n, url in enumerate(covers[:6])]
    seen = _answers(local_stack)
    _, described = run_csv(local_stack, csv_text(rows), "csv-files/hungry.csv", timeout=300)

    failed = [a.payload for name, a in seen if name == render and a.failed]
    # Runtime.OutOfMemory is not in the task's Retry list: one attempt, as on AWS.
    assert [f["errorType"] for f in failed] == ["Runtime.OutOfMemory"]
    assert "Runtime exited with error: signal: killed" in failed[0]["errorMessage"]
    summary, report = _report(local_stack, described)
    assert summary["creators"] == {"total": 7, "succeeded": 6, "partial": 0, "failed": 1}
    assert summary["status"] == "completed_with_failures"  # 1 of 7: within the map's 25%
    (hungry,) = [c for c in report["creators"] if c["creator"] == "hungry"]
    assert hungry["status"] == "failed" and not hungry["collages"]


def test_a_task_past_its_timeout_is_killed_retried_as_sandbox_timedout_and_the_rest_finish(
    local_stack, covers, monkeypatch
):
    render = local_stack.function_name("RenderFunction")
    local_stack.runtime.configure(
        render,
        timeout=3,
        handler="tests.support.lambda_handlers.slow_render",  # sleeps for SLOW_CREATORS
        env={SLOW_CREATORS: "slowpoke", "PYTHONPATH": str(project_root())},
    )
    rows = [("slowpoke", covers[0], "2025-01-01")]
    rows += [(f"quick{n}", url, "2025-01-01") for n, url in enumerate(covers[1:5])]
    seen = _answers(local_stack)
    with fast_waits(monkeypatch) as waits:
        _, described = run_csv(local_stack, csv_text(rows), "csv-files/slow.csv", timeout=300)

    timed_out = [a.payload for name, a in seen if name == render and a.failed]
    # The first attempt and the 3 retries the ASL gives Sandbox.Timedout, each killed at 3 s.
    assert [t["errorType"] for t in timed_out] == ["Sandbox.Timedout"] * 4
    assert all(t["errorMessage"].endswith("Task timed out after 3.00 seconds") for t in timed_out)
    # Waits of IntervalSeconds 2, BackoffRate 2, with full jitter: at most 2, 4 and 8 s.
    retries = waits.state_machine_retry
    assert len(retries) == 3 and all(w <= cap for w, cap in zip(retries, (2, 4, 8), strict=True))
    summary, report = _report(local_stack, described)
    assert summary["creators"] == {"total": 5, "succeeded": 4, "partial": 0, "failed": 1}
    (slow,) = [c for c in report["creators"] if c["creator"] == "slowpoke"]
    assert slow["status"] == "failed"


@pytest.mark.parametrize(("crashing", "status"), [(1, "completed_with_failures"), (2, "failed")])
def test_the_map_fails_past_its_tolerated_failure_percentage_as_on_aws(
    local_stack, covers, crashing, status
):
    """MapToleratedFailurePercentage is 25: 1 crashed child of 4 is tolerated, 2 fail the map
    run (States.ExceedToleratedFailureThreshold), and the report names the map as the stage."""
    render = local_stack.function_name("RenderFunction")
    names = [f"c{n}" for n in range(4)]
    local_stack.runtime.configure(
        render,
        handler="tests.support.lambda_handlers.slow_render",
        env={FAILING_CREATORS: ",".join(names[:crashing]), "PYTHONPATH": str(project_root())},
    )
    rows = [(name, url, "2025-01-01") for name, url in zip(names, covers, strict=False)]
    _, described = run_csv(local_stack, csv_text(rows), "csv-files/crash.csv", timeout=300)

    (key,) = [k for k in keys(local_stack, "OutputBucket") if k.endswith(".json")]
    report = read_json(local_stack, "OutputBucket", key)
    assert report["status"] == status
    assert report["totals"]["creators"]["failed"] == crashing
    if status == "failed":  # the execution ends in RunFailed, as a failed run does on AWS
        assert described["status"] == "FAILED"
        assert report["error"]["stage"] == "map"
        assert report["error"]["reason"].startswith("States.ExceedToleratedFailureThreshold")
    else:
        assert json.loads(described["output"])["status"] == status
