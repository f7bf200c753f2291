"""The SAM template: lint, build and the translated CloudFormation, offline.

Properties are read from the template as samtranslator turns it into CloudFormation (not by
searching text), the way CloudFormation will see it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAM = str(Path(sys.executable).with_name("sam"))
ENV = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}


@pytest.fixture(scope="module")
def template():
    from samcli.yamlhelper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def resources():
    from samcli.yamlhelper import yaml_parse
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # every managed policy we use is a SAM policy template
        def load(self):
            return {}

    template = yaml_parse((ROOT / "template.yaml").read_text())
    # What `sam package` does before CloudFormation sees it: local paths become S3 locations.
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/functions.zip"
    machine = template["Resources"]["CollageStateMachine"]["Properties"]
    machine["DefinitionUri"] = {"Bucket": "artifacts", "Key": "collage_workflow.asl.json"}
    translated = transform(template, {}, NoManagedPolicies())
    return translated["Resources"]


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_sam_validate_lint_passes():
    result = subprocess.run(
        [SAM, "validate", "--lint"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.slow
def test_sam_build_packages_every_function(tmp_path):
    # Build a copy, so no build output (.aws-sam/) lands in the checkout.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "template.yaml", project)
    shutil.copytree(ROOT / "statemachine", project / "statemachine")
    shutil.copytree(
        ROOT / "functions", project / "functions", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [SAM, "build"], cwd=project, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    build = project / ".aws-sam" / "build"
    for function in (
        "StartFromS3Function",
        "StartFromSqsFunction",
        "SplitFunction",
        "RenderFunction",
        "AggregateFunction",
    ):
        package = build / function
        assert (package / "collage" / "handlers" / "render.py").is_file(), function
        assert (package / "PIL").is_dir() and (package / "aws_lambda_powertools").is_dir(), function
    # The default architecture is arm64: the compiled parts must be aarch64 ELF files.
    (imaging,) = (build / "RenderFunction" / "PIL").glob("_imaging.cpython-311-*.so")
    (umath,) = (build / "SplitFunction" / "numpy").glob("_core/_multiarray_umath.cpython-311-*.so")
    for binary in (imaging, umath):
        header = binary.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 0xB7
    # Lambda's limit for an unzipped package is 250 MB.
    size = sum(f.stat().st_size for f in (build / "SplitFunction").rglob("*") if f.is_file())
    assert size < 250 * 1024 * 1024 * 0.8, size
    built = (build / "template.yaml").read_text()
    assert "collage_workflow.asl.json" in built


def test_buckets_are_private_encrypted_and_tls_only(resources):
    buckets = of_type(resources, "AWS::S3::Bucket")
    assert set(buckets) == {"InputBucket", "OutputBucket", "TempBucket"}
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), name
    policies = of_type(resources, "AWS::S3::BucketPolicy")
    assert {p["Properties"]["Bucket"]["Ref"] for p in policies.values()} == set(buckets)
    for policy in policies.values():
        statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": False}}


def test_input_bucket_sends_events_to_eventbridge_and_a_rule_starts_runs(resources):
    config = resources["InputBucket"]["Properties"]["NotificationConfiguration"]
    assert config["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    rules = of_type(resources, "AWS::Events::Rule")
    (rule,) = rules.values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "csv-files/"}]
    target = rule["Properties"]["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": ["StartFromS3Function", "Arn"]}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target
    # EventBridge may only use that dead-letter queue if the queue's policy lets it send.
    dlq = target["DeadLetterConfig"]["Arn"]
    (policy,) = of_type(resources, "AWS::SQS::QueuePolicy").values()
    allow = policy["Properties"]["PolicyDocument"]["Statement"][0]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage" and allow["Resource"] == dlq


def test_queue_has_a_dead_letter_queue_and_partial_batch_responses(resources):
    queue = resources["ProcessingQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["ProcessingDeadLetterQueue", "Arn"]
    }
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    (mapping,) = mappings.values()
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_state_machine_traces_logs_and_uses_its_asl_file(resources):
    machine = resources["CollageStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == {"Ref": "StateMachineLogLevel"}
    assert machine["DefinitionSubstitutions"]["MapExecutionType"] == "EXPRESS"
    for function in of_type(resources, "AWS::Lambda::Function").values():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
        assert function["Properties"]["Runtime"] == "python3.11"


def test_lifecycle_rules_expire_temp_and_tier_archives(resources):
    temp_rules = resources["TempBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert temp_rules[0]["ExpirationInDays"] == {"Ref": "TempExpirationDays"}
    archive = next(
        r
        for r in resources["InputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        if r["Prefix"] == "archive/"
    )
    assert [t["StorageClass"] for t in archive["Transitions"]] == ["STANDARD_IA", "GLACIER"]
    assert archive["ExpirationInDays"] == {"Ref": "ArchiveExpirationDays"}


def test_function_policies_name_only_their_prefixes(resources):
    roles = of_type(resources, "AWS::IAM::Role")
    for name, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"]
                    if isinstance(statement["Action"], list)
                    else [statement["Action"]]
                )
                if any(a.startswith("s3:") for a in actions):
                    assert "s3:*" not in actions, name
                    assert statement["Resource"] != "*", f"{name} grants S3 on every resource"


def test_dashboard_shows_runs_map_items_collages_failures_durations_errors_and_dlq(resources):
    import json
    import re

    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body, variables = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    document = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    metrics = {
        metric[1]
        for widget in document["widgets"]
        for metric in widget["properties"].get("metrics", [])
        if len(metric) > 1 and metric[1] not in (".", "...")
    }
    assert {"ExecutionsStarted", "ExecutionsFailed", "Invocations", "CollagesCreated"} <= metrics
    assert {"CoversFailed", "Duration", "Errors", "Throttles"} <= metrics
    assert "ApproximateNumberOfMessagesVisible" in metrics
    assert variables["Namespace"] == "TikTokCoverCollage"
    alarm_widget = next(w for w in document["widgets"] if w["type"] == "alarm")
    assert len(alarm_widget["properties"]["alarms"]) == 3


def test_alarms_on_failed_runs_dlq_messages_and_lambda_errors_notify_a_topic(resources, template):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    by_metric = {
        a["Properties"].get("MetricName", "math"): a["Properties"] for a in alarms.values()
    }
    assert by_metric["ExecutionsFailed"]["Namespace"] == "AWS/States"
    assert by_metric["ApproximateNumberOfMessagesVisible"]["Namespace"] == "AWS/SQS"
    errors = [m for m in by_metric["math"]["Metrics"] if "MetricStat" in m]
    functions = of_type(resources, "AWS::Lambda::Function")
    assert {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in errors} == set(
        functions
    )
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_settings_are_parameters_with_constraints(template):
    parameters = template["Parameters"]
    assert (parameters["Rows"]["MinValue"], parameters["Rows"]["MaxValue"]) == (1, 20)
    assert (parameters["JpegQuality"]["MinValue"], parameters["JpegQuality"]["MaxValue"]) == (
        1,
        100,
    )
    assert parameters["LogLevel"]["AllowedValues"] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    for name, parameter in parameters.items():
        assert parameter.get("Description"), f"parameter {name} has no description"
    outputs = template["Outputs"]
    for name in (
        "InputBucketName",
        "OutputBucketName",
        "ProcessingQueueUrl",
        "StateMachineArn",
        "DashboardUrl",
    ):
        assert name in outputs
