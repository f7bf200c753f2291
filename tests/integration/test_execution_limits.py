"""What AWS enforces on the state machine and moto does not: execution time limits, and that
every failure still ends with a report and the CSV parked.

moto runs EXPRESS children as STANDARD and never times a Lambda out, so these are checked on the
ASL and the template (with the template's parameter defaults), the way AWS will run them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "collage_workflow.asl.json"
# Step Functions quotas (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)
LIMIT_SECONDS = {"EXPRESS": 5 * 60, "STANDARD": 365 * 24 * 3600}
LAMBDA_MAX_TIMEOUT = 900
TASK_DEFAULT_TIMEOUT = 99_999_999  # a Task without TimeoutSeconds waits that long at most
# The report is written and the CSV parked by the aggregate function (Lambda)...
REPORTERS = {"Aggregate", "RecordFailedRun", "RecordAggregateFailure"}
# ... or, when that function cannot, by the state machine's own S3 calls (no Lambda).
LAST_RESORT = ["ParkCsvDirectly", "RemoveParkedSource", "WriteFallbackReport"]


@pytest.fixture(scope="module")
def template():
    from samcli.yamlhelper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def machine():
    return json.loads(ASL.read_text())


def default(template: dict, value):
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def lambda_timeouts(template: dict) -> dict[str, float]:
    """Timeout (s) of each function, by the ASL placeholder that names it."""
    globals_ = template["Globals"]["Function"]
    substitutions = template["Resources"]["CollageStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    timeouts = {}
    for placeholder, value in substitutions.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            function = template["Resources"][value["Fn::GetAtt"][0]]["Properties"]
            timeouts[placeholder] = float(
                default(template, function.get("Timeout", globals_.get("Timeout", 3)))
            )
    return timeouts


def attempt_seconds(state: dict, timeouts: dict[str, float]) -> float:
    """The longest one attempt of a Task can take."""
    limits = []
    if "TimeoutSeconds" in state:
        limits.append(float(state["TimeoutSeconds"]))
    placeholders = re.findall(r"\$\{(\w+)\}", json.dumps(state.get("Parameters", {})))
    limits += [timeouts[p] for p in placeholders if p in timeouts]
    if state["Resource"].startswith("arn:aws:states:::aws-sdk:"):
        limits.append(60.0)  # an SDK call: its HTTP timeout, well under a minute
    return min(limits) if limits else TASK_DEFAULT_TIMEOUT


# Lambda refuses a throttled Invoke before the function runs: such a try takes a round trip.
REFUSED = {"Lambda.TooManyRequestsException"}
REFUSED_ATTEMPT_SECONDS = 1.0


def worst_case_seconds(state: dict, timeouts: dict[str, float]) -> float:
    """Every attempt times out (a refused one takes a round trip), and every retry waits its
    longest backoff."""
    one = attempt_seconds(state, timeouts)
    total, attempts = one, 1
    for retrier in state.get("Retry", []):
        interval = retrier.get("IntervalSeconds", 1)
        rate = retrier.get("BackoffRate", 2.0)
        cap = retrier.get("MaxDelaySeconds", float("inf"))
        each = REFUSED_ATTEMPT_SECONDS if set(retrier["ErrorEquals"]) <= REFUSED else one
        for n in range(retrier.get("MaxAttempts", 3)):
            total += min(interval * rate**n, cap) + each
            attempts += 1
    return total


def processors(machine: dict, kind: str = "STANDARD"):
    """(execution type, states) of the machine and of every map's item processor."""
    yield kind, machine["States"]
    for state in machine["States"].values():
        if "ItemProcessor" in state:
            config = state["ItemProcessor"].get("ProcessorConfig", {})
            child = config.get("ExecutionType", "STANDARD")
            yield from processors(state["ItemProcessor"], child)


def test_the_map_children_run_as_express(template, machine):
    substitutions = template["Resources"]["CollageStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    kinds = [kind for kind, _ in processors(machine)]
    assert kinds == ["STANDARD", "${MapExecutionType}"]
    assert substitutions["MapExecutionType"] == "EXPRESS"


def test_no_task_can_outlast_its_execution_type(template, machine):
    timeouts = lambda_timeouts(template)
    assert all(0 < t <= LAMBDA_MAX_TIMEOUT for t in timeouts.values()), timeouts
    substitutions = template["Resources"]["CollageStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    for kind, states in processors(machine):
        kind = substitutions.get(kind.strip("${}"), kind)
        # A child runs its states one after another: together they must fit in the limit.
        tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
        worst = sum(worst_case_seconds(s, timeouts) for s in tasks.values())
        assert worst <= LIMIT_SECONDS[kind], f"{kind} {sorted(tasks)}: {worst:.0f} s"


def test_the_render_task_fits_an_express_child_with_its_retries(template, machine):
    render = machine["States"]["RenderCollages"]["ItemProcessor"]["States"]["RenderCollage"]
    timeouts = lambda_timeouts(template)
    assert worst_case_seconds(render, timeouts) <= 300
    retried = [e for r in render["Retry"] for e in r["ErrorEquals"]]
    assert "Sandbox.Timedout" in retried  # a timed-out attempt is retried, and still fits


def test_the_limit_check_catches_the_old_render_timeout(template, machine):
    """The defect of issue 14: 180 s x 4 attempts does not fit in 5 minutes."""
    render = machine["States"]["RenderCollages"]["ItemProcessor"]["States"]["RenderCollage"]
    timeouts = {**lambda_timeouts(template), "RenderFunctionArn": 180.0}
    assert worst_case_seconds(render, timeouts) > 300


def successors(state: dict) -> list[str]:
    names = [state.get("Next"), state.get("Default")]
    names += [c.get("Next") for c in state.get("Choices", [])]
    names += [c.get("Next") for c in state.get("Catch", [])]
    return [n for n in names if n]


def catch_all(state: dict) -> str | None:
    for catcher in state.get("Catch", []):
        if "States.ALL" in catcher["ErrorEquals"]:
            return catcher["Next"]
    return None


def reaches(states: dict, start: str, goal: set[str]) -> bool:
    seen, frontier = set(), [start]
    while frontier:
        name = frontier.pop()
        if name in goal:
            return True
        if name not in seen:
            seen.add(name)
            frontier += successors(states[name])
    return False


def test_every_state_that_can_fail_has_a_catch_that_reports_and_parks(machine):
    states = machine["States"]
    fallible = {n: s for n, s in states.items() if s["Type"] in ("Task", "Map", "Parallel")}
    for name, state in fallible.items():
        target = catch_all(state)
        assert target, f"{name} has no Catch on States.ALL: its error would end the run unreported"
        if name in LAST_RESORT:
            # The last resort: a failed step goes on to the next one, and the last ends the run.
            later = LAST_RESORT[LAST_RESORT.index(name) + 1 :]
            assert target in later or target == "WriteFallbackErrorNote", (name, target)
        elif name != "WriteFallbackErrorNote":
            assert reaches(states, target, REPORTERS | {LAST_RESORT[0]}), (name, target)
    # The Lambda reporters' own failures go to the state machine's last resort.
    for name in REPORTERS - {"Aggregate"}:
        assert catch_all(states[name]) == "DescribeReportFailure"
    assert states["DescribeReportFailure"]["Next"] == LAST_RESORT[0]
    # Inside the map, a child's failure is the map's: caught above, to Aggregate.
    assert catch_all(states["RenderCollages"]) == "Aggregate"


def test_the_last_resort_parks_the_csv_and_writes_the_report_with_s3_calls(machine):
    states = machine["States"]
    park, remove, report = (states[n] for n in LAST_RESORT)
    assert park["Resource"] == "arn:aws:states:::aws-sdk:s3:copyObject"
    assert park["Parameters"]["Key.$"].startswith("States.Format('failed/")
    assert remove["Resource"] == "arn:aws:states:::aws-sdk:s3:deleteObject"
    assert report["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert "report_" in report["Parameters"]["Key.$"]
    # No Lambda on that path: it works when the function cannot run at all.
    assert not any("FunctionArn" in json.dumps(states[n]) for n in LAST_RESORT)


def lambda_tasks(machine: dict):
    for _, states in processors(machine):
        for name, state in states.items():
            if state.get("Resource") == "arn:aws:states:::lambda:invoke":
                yield name, state


def test_throttles_get_a_retrier_of_their_own_with_a_longer_backoff(machine):
    """Issue 22, item 5: a throttle was tried 3 times over 14 s at most, then failed a child.
    Each Lambda task now waits longer between throttled tries (in the EXPRESS child, as long
    as its 5 minutes allow, test above), and retries a client-side timeout of the call too."""
    tasks = dict(lambda_tasks(machine))
    assert set(tasks) == {"SplitByCreator", "RenderCollage", "Aggregate", "RecordFailedRun",
                          "RecordAggregateFailure"}  # fmt: skip
    for name, state in tasks.items():
        throttle, *others = state["Retry"]
        assert throttle["ErrorEquals"] == ["Lambda.TooManyRequestsException"], name
        assert all("Lambda.TooManyRequestsException" not in r["ErrorEquals"] for r in others)
        waits = [
            min(throttle["IntervalSeconds"] * throttle["BackoffRate"] ** n,
                throttle.get("MaxDelaySeconds", float("inf")))
            for n in range(throttle["MaxAttempts"])
        ]  # fmt: skip
        assert sum(waits) >= 30 and throttle["MaxAttempts"] >= 4, (name, waits)
        assert throttle["JitterStrategy"] == "FULL"
        assert any("Lambda.ClientExecutionTimeoutException" in r["ErrorEquals"] for r in others)
