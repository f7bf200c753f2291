"""The ASL file: valid for the template's substitutions, every Next exists, every state reachable.

Neither `sam validate` nor cfn-lint reads the file behind DefinitionUri, so this checks it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachine" / "collage_workflow.asl.json"


@pytest.fixture(scope="module")
def template():
    from samcli.yamlhelper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


def targets(state: dict) -> list[str]:
    names = [state.get("Next"), state.get("Default")]
    names += [choice.get("Next") for choice in state.get("Choices", [])]
    names += [catch.get("Next") for catch in state.get("Catch", [])]
    return [name for name in names if name]


def check_graph(machine: dict, where: str) -> None:
    states = machine["States"]
    assert machine["StartAt"] in states, f"{where}: StartAt names no state"
    for name, state in states.items():
        for target in targets(state):
            assert target in states, f"{where}: {name} goes to missing state {target}"
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert terminal or targets(state), f"{where}: {name} neither ends nor goes anywhere"
        if "ItemProcessor" in state:
            check_graph(state["ItemProcessor"], f"{where}/{name}")
    reached, frontier = set(), [machine["StartAt"]]
    while frontier:
        name = frontier.pop()
        if name not in reached:
            reached.add(name)
            frontier.extend(targets(states[name]))
    assert reached == set(states), f"{where}: unreachable states {set(states) - reached}"


def test_every_next_exists_and_every_state_is_reachable():
    check_graph(json.loads(ASL.read_text()), "workflow")


def test_placeholders_match_the_templates_substitutions(template):
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    props = template["Resources"]["CollageStateMachine"]["Properties"]
    assert placeholders == set(props["DefinitionSubstitutions"])
    assert props["DefinitionUri"] == "statemachine/collage_workflow.asl.json"


def test_the_shape_the_console_shows():
    machine = json.loads(ASL.read_text())
    states = machine["States"]
    assert machine["StartAt"] == "SplitByCreator"
    mapped = states["RenderCollages"]
    assert mapped["Type"] == "Map"
    assert mapped["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert mapped["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert "ResultWriter" in mapped, "results of a large map must go to S3, not the payload"
    assert "MaxConcurrencyPath" in mapped and "ToleratedFailurePercentagePath" in mapped
    assert {c["Next"] for c in mapped["Catch"]} == {"Aggregate"}
    retriers = mapped["ItemProcessor"]["States"]["RenderCollage"]["Retry"]
    retried = [error for retrier in retriers for error in retrier["ErrorEquals"]]
    assert "TransientError" in retried and "States.ALL" not in retried


def test_moto_accepts_the_definition_with_local_substitutions(template):
    import boto3
    from moto import mock_aws

    local_values = {
        "MapExecutionType": "STANDARD",  # the local run's one change (moto parses no EXPRESS)
        "TempBucket": "temp-bucket",
    }
    text = ASL.read_text()
    for key in template["Resources"]["CollageStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]:
        value = local_values.get(key, f"arn:aws:lambda:us-east-1:123456789012:function:{key}")
        text = text.replace("${" + key + "}", value)
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        created = client.create_state_machine(
            name="check", definition=text, roleArn="arn:aws:iam::123456789012:role/r"
        )
        assert created["stateMachineArn"].endswith(":check")
