"""The SAM template: lint and the translated CloudFormation, offline (the build: test_build.py).

Properties are read from the template as samtranslator turns it into CloudFormation (not by
searching text), the way CloudFormation will see it.
"""

from __future__ import annotations

import json
import os
import re
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
    from scripts.permissions_table import translated_resources

    return translated_resources(ROOT)


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_sam_validate_lint_passes():
    result = subprocess.run(
        [SAM, "validate", "--lint"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_no_handler_imports_a_library_its_layers_leave_out():
    """Each handler in a fresh interpreter where the libraries outside its layers are missing."""
    program = (
        "import importlib, sys, time\n"
        "sys.modules.update({m: None for m in sys.argv[2:]})\n"
        "started = time.perf_counter()\n"
        "importlib.import_module(sys.argv[1])\n"
        "print(f'{(time.perf_counter() - started) * 1000:.0f}')\n"
    )
    # Nothing deployed imports the local tools or what only they need.
    tools = ["collage_tools", "moto", "sqlalchemy", "pymysql", "samcli"]
    cold = {}
    for handler, missing in (
        ("start_from_s3", ["PIL", "pyarrow", "requests"]),
        ("start_from_sqs", ["PIL", "pyarrow", "requests"]),
        ("aggregate", ["PIL", "pyarrow", "requests"]),
        ("split", ["PIL", "requests"]),
        ("render", ["pyarrow"]),
    ):
        module = f"collage.handlers.{handler}"
        result = subprocess.run(
            [sys.executable, "-c", program, module, *missing, *tools],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{module}: {result.stderr[-2000:]}"
        cold[handler] = f"{result.stdout.strip()} ms"
    print("cold import of each handler (fresh interpreter, this machine):", cold)


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
    assert pattern["detail"]["object"]["key"] == [
        {"wildcard": "csv-files/*.csv"},
        {"wildcard": "csv-files/*.CSV"},
    ]
    target = rule["Properties"]["Targets"][0]
    assert target["Arn"] == {"Fn::GetAtt": ["StartFromS3Function", "Arn"]}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target
    # EventBridge may only use that dead-letter queue if the queue's policy lets it send.
    dlq = target["DeadLetterConfig"]["Arn"]
    (policy,) = [
        p
        for p in of_type(resources, "AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": "ProcessingDeadLetterQueue"}]
    ]
    allow = policy["Properties"]["PolicyDocument"]["Statement"][0]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage" and allow["Resource"] == dlq
    # That rule only, not any rule of the account.
    (rule_name,) = rules
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_name, "Arn"]}}
    }


def test_the_upload_rule_matches_csv_keys_under_csv_files_only(resources):
    from moto.events.models import EventPattern

    (rule,) = of_type(resources, "AWS::Events::Rule").values()
    pattern = json.loads(json.dumps(rule["Properties"]["EventPattern"]))
    pattern["detail"]["bucket"]["name"] = ["input"]
    matcher = EventPattern.load(json.dumps(pattern))

    def matches(key):
        event = {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": "input"}, "object": {"key": key}},
        }
        return matcher.matches_event(event)

    assert matches("csv-files/covers.csv") and matches("csv-files/daily/covers.CSV")
    assert not matches("csv-files/covers.json") and not matches("csv-files/covers.csv.tmp")
    assert not matches("archive/covers.csv") and not matches("failed/x_1.csv")


def test_every_queue_refuses_insecure_transport(resources):
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    tls_only = set()
    for policy in of_type(resources, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement["Condition"] == {
                "Bool": {"aws:SecureTransport": False}
            }:
                tls_only |= {q["Ref"] for q in policy["Properties"]["Queues"]}
    assert tls_only == queues


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
        assert function["Properties"]["Runtime"] == "python3.13"


def test_layers_are_built_for_the_stacks_runtime_and_architecture(template):
    """Lambda's python3.13, and the wheels of the Architecture parameter (x86_64 too)."""
    layers = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    }
    assert set(layers) == {"RuntimeLayer", "RenderLayer", "SplitEngineLayer"}
    for name, layer in layers.items():
        assert layer["Metadata"]["BuildMethod"] == "python3.13", name
        assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}, name
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"], name
        assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}], name
        # sam build installs the lock (every package pinned), not the top-level requirements.
        lock = ROOT / layer["Properties"]["ContentUri"] / "requirements.txt"
        pins = [line for line in lock.read_text().splitlines() if line and line[0].isalnum()]
        assert pins and all(re.fullmatch(r"[\w.-]+==[\w.]+", pin) for pin in pins), name


def test_lifecycle_rules_expire_temp_and_tier_archives(resources):
    temp_rules = resources["TempBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert temp_rules[0]["ExpirationInDays"] == {"Ref": "TempExpirationDays"}
    archive = next(
        r
        for r in resources["InputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        if r["Prefix"] == "archive/"
    )
    assert [t["StorageClass"] for t in archive["Transitions"]] == ["STANDARD_IA", "GLACIER"]
    assert [t["TransitionInDays"] for t in archive["Transitions"]] == [
        {"Ref": "ArchiveInfrequentAccessDays"},
        {"Ref": "ArchiveGlacierDays"},
    ]
    assert archive["ExpirationInDays"] == {"Ref": "ArchiveExpirationDays"}


def test_lifecycle_days_stay_in_order_for_every_accepted_value(template):
    """IA < Glacier < expiry whatever is deployed: the parameters' ranges do not overlap."""
    parameters = template["Parameters"]
    ia, glacier, expiry = (
        parameters[name]
        for name in ("ArchiveInfrequentAccessDays", "ArchiveGlacierDays", "ArchiveExpirationDays")
    )
    assert ia["MinValue"] >= 30  # S3's minimum for STANDARD_IA
    assert ia["MaxValue"] + 30 <= glacier["MinValue"]  # 30 days in STANDARD_IA first
    assert glacier["MaxValue"] + 90 <= expiry["MinValue"]  # Glacier's 90-day minimum
    for parameter in (ia, glacier, expiry):
        assert parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"]


def test_every_function_logs_to_a_group_with_retention(resources):
    groups = of_type(resources, "AWS::Logs::LogGroup")
    functions = of_type(resources, "AWS::Lambda::Function")
    assert len(functions) == 5
    for name, function in functions.items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    machine_logs = resources["CollageStateMachine"]["Properties"]["LoggingConfiguration"]
    (destination,) = machine_logs["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert len(groups) == 6


def test_each_function_has_only_the_layers_it_needs(resources):
    functions = of_type(resources, "AWS::Lambda::Function")
    layers = {
        # SAM names a layer version after the layer and a hash of its content.
        name: sorted(
            re.sub(r"[0-9a-f]{10}$", "", layer["Ref"])
            for layer in function["Properties"].get("Layers", [])
        )
        for name, function in functions.items()
    }
    assert layers == {
        "StartFromS3Function": ["RuntimeLayer"],
        "StartFromSqsFunction": ["RuntimeLayer"],
        "SplitFunction": ["RuntimeLayer", "SplitEngineLayer"],
        "RenderFunction": ["RenderLayer", "RuntimeLayer"],
        "AggregateFunction": ["RuntimeLayer"],
    }
    for function in functions.values():
        assert function["Properties"]["Code"] == {"S3Bucket": "artifacts", "S3Key": "functions.zip"}


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


def test_the_readme_permissions_table_is_generated_from_the_template(resources):
    from scripts import permissions_table

    readme = (ROOT / "docs" / "permissions.md").read_text()
    table = permissions_table.markdown(resources)
    assert table in readme, "run: python scripts/permissions_table.py --write docs/permissions.md"
    rows = permissions_table.rows(resources)
    assert ("AggregateFunction", "`s3:GetObject`", "`TempBucket/map-results/*`") in rows
    assert {who for who, _, _ in rows} == {
        "StartFromS3Function",
        "StartFromSqsFunction",
        "SplitFunction",
        "RenderFunction",
        "AggregateFunction",
        "CollageStateMachine",
    }


def test_the_buckets_with_records_outlive_the_stack(resources):
    """Issue 22, item 7: uploads, archived CSVs, collages and reports are kept."""
    for name in ("InputBucket", "OutputBucket"):
        assert resources[name]["DeletionPolicy"] == "Retain", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name


def test_the_queue_redrives_after_five_receives(resources):
    redrive = resources["ProcessingQueue"]["Properties"]["RedrivePolicy"]
    assert int(redrive["maxReceiveCount"]) >= 5  # AWS's advice for a Lambda event source


def test_the_state_machine_name_fits_whatever_the_stack_name(resources):
    """A stack name may have 128 characters, a state machine's 80: the name comes from the
    stack id (12 hex digits), and the policy's self-references name the same."""
    name = resources["CollageStateMachine"]["Properties"]["StateMachineName"]
    text, variables = name["Fn::Sub"]
    assert "AWS::StackName" not in json.dumps([text, variables])
    assert len(text.replace("${Id}", "0" * 12)) <= 80
    role = resources["CollageStateMachineRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    own = [s for s in statements if s.get("Sid", "").startswith("DistributedMap")]
    assert len(own) == 2
    for statement in own:
        pattern, names = statement["Resource"]["Fn::Sub"]
        assert f":{text}" in pattern and names == variables


def test_the_collage_task_may_have_reserved_concurrency(resources, template):
    parameter = template["Parameters"]["RenderReservedConcurrency"]
    assert (parameter["Default"], parameter["MinValue"]) == (0, 0)  # 0: none reserved
    reserved = resources["RenderFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert reserved == {
        "Fn::If": [
            "HasRenderReservedConcurrency",
            {"Ref": "RenderReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert template["Conditions"]["HasRenderReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "RenderReservedConcurrency"}, 0]}]
    }
    for starter in ("StartFromS3Function", "StartFromSqsFunction"):
        variables = resources[starter]["Properties"]["Environment"]["Variables"]
        assert variables["RENDER_RESERVED_CONCURRENCY"] == {"Ref": "RenderReservedConcurrency"}


def test_the_errors_alarm_waits_for_errors_that_last(resources):
    """Issue 22, item 7: one transient error that a retry fixed paged; now errors must recur
    (3 or more in 2 of 3 five-minute periods); a run that failed for good pages at once."""
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    errors = alarms["LambdaErrorsAlarm"]["Properties"]
    assert (errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (3, 2)
    assert errors["Threshold"] >= 3
    failed = alarms["FailedExecutionsAlarm"]["Properties"]
    assert (failed["Threshold"], failed["EvaluationPeriods"]) == (1, 1)
