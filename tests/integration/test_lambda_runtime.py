"""The local Lambda runtime: environments are processes, reused while warm, limited in number,
killed past their timeout or memory and answered as AWS answers
(tools/collage_tools/lambda_runtime.py)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from collage_tools.emulator import project_root
from collage_tools.lambda_runtime import FunctionSpec, LambdaRuntime

HANDLER = "tests.support.lambda_handlers.handler"


@pytest.fixture
def runtime() -> Iterator[LambdaRuntime]:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    specs = {
        "fn": FunctionSpec("fn", HANDLER, timeout=2.0, memory=256, concurrency=2, arn="arn:fn"),
    }
    lambda_runtime = LambdaRuntime(specs, base_env=env).start()
    yield lambda_runtime
    lambda_runtime.stop()


def test_an_answer_comes_from_a_warm_environment_the_second_time(runtime):
    first = runtime.invoke("fn", {"echo": 1})
    second = runtime.invoke("fn", {"echo": 2})
    assert not first.failed and first.payload["echo"] == 1 and second.payload["echo"] == 2
    assert first.payload["pid"] == second.payload["pid"] != os.getpid()  # reused, not in-process
    assert first.payload["memory"] == 256 and 0 < second.payload["remaining_ms"] <= 2000
    assert runtime.functions["fn"].cold_starts == 1


def test_at_most_the_concurrency_runs_at_once(runtime):
    answers = []

    def call() -> None:
        answers.append(runtime.invoke("fn", {"do": "sleep", "seconds": 0.5}))

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(not answer.failed for answer in answers)
    assert len({answer.payload["pid"] for answer in answers}) == 2  # two environments, reused
    assert time.monotonic() - started >= 1.0  # four calls of 0.5 s, two at a time


def test_past_its_timeout_the_invocation_is_killed_and_answered_sandbox_timedout(runtime):
    runtime.invoke("fn", {})  # warm: the cold start is not what is timed here
    started = time.monotonic()
    answer = runtime.invoke("fn", {"do": "sleep", "seconds": 30})
    assert time.monotonic() - started < 5
    assert answer.function_error == "Unhandled"
    assert answer.payload["errorType"] == "Sandbox.Timedout"
    assert answer.payload["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert not runtime.invoke("fn", {}).failed  # a fresh environment answers the next call


def test_past_its_memory_the_environment_is_killed_and_answered_out_of_memory(runtime):
    answer = runtime.invoke("fn", {"do": "hold", "mb": 400})
    assert answer.payload["errorType"] == "Runtime.OutOfMemory"
    assert answer.payload["errorMessage"].endswith("Runtime exited with error: signal: killed")


def test_a_spike_freed_before_the_answer_still_counts(runtime):
    # Lambda's limit is on resident memory at any moment: the peak (VmHWM) is what is checked.
    answer = runtime.invoke("fn", {"do": "spike", "mb": 400})
    assert answer.payload["errorType"] == "Runtime.OutOfMemory"
    below = runtime.invoke("fn", {"do": "spike", "mb": 50})
    assert not below.failed


def test_a_handler_error_and_a_crash_are_named_as_aws_names_them(runtime):
    raised = runtime.invoke("fn", {"do": "raise", "message": "no"})
    assert raised.function_error == "Unhandled"
    assert (raised.payload["errorType"], raised.payload["errorMessage"]) == ("ValueError", "no")
    assert raised.payload["stackTrace"]
    crashed = runtime.invoke("fn", {"do": "exit", "code": 3})
    assert crashed.payload["errorType"] == "Runtime.ExitError"
    assert crashed.payload["errorMessage"].endswith("Runtime exited with error: exit status 3")


def test_idle_environments_are_reclaimed(runtime):
    runtime.idle_seconds = 0.2
    runtime.invoke("fn", {})
    time.sleep(0.6)
    assert runtime.environments() == {"fn": 0}
