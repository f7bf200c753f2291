"""A collage stack reached only through public AWS APIs, as a user's own script would reach it.

The same code drives a deployed stack (`--stack NAME`), `collage serve` or LocalStack
(`--endpoint-url`), and the embedded emulator of `collage run` (in-process clients): find the
stack's resources from its CloudFormation outputs, start a run the way users do (an upload
under csv-files/, or a message), find the execution that event started, follow it, and fetch
what it wrote.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collage_tools.progress import Snapshot

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
NEEDED_OUTPUTS = ("InputBucketName", "OutputBucketName", "ProcessingQueueUrl", "StateMachineArn")
# Steps whose output is the run summary when the execution failed after writing a report.
REPORTING_STEPS = ("Aggregate", "RecordFailedRun", "RecordAggregateFailure")


class StackError(RuntimeError):
    """The stack, a run, or its execution cannot be found or used; the message says why."""


@dataclass
class CollageStack:
    name: str
    outputs: dict[str, str]
    clients: Callable[[str], Any]  # service name -> boto3 client
    _made: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def find(
        cls, name: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> CollageStack:
        """The stack's outputs, read with describe-stacks as for any CloudFormation stack."""
        clients = client_factory(endpoint_url, region)
        try:
            stacks = clients("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except Exception as error:
            raise StackError(f"stack {name!r}: {reason_of(error)}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = [key for key in NEEDED_OUTPUTS if key not in outputs]
        if missing:
            raise StackError(
                f"stack {name!r} has no {', '.join(missing)} output: not a collage stack?"
            )
        return cls(name, outputs, clients)

    def client(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self.clients(service)
        return self._made[service]

    @property
    def state_machine(self) -> str:
        return self.outputs["StateMachineArn"]

    def execution_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return self.state_machine.replace(":stateMachine:", ":execution:") + ":" + name_or_arn


def client_factory(endpoint_url: str | None, region: str | None) -> Callable[[str], Any]:
    """boto3 clients for one account and region; a local endpoint defaults to us-east-1."""
    import boto3

    from collage.aws import make_client

    session, options = boto3.session.Session(), {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
        if session.get_credentials() is None:  # a local endpoint takes any key
            options.update(aws_access_key_id="local", aws_secret_access_key="local")
    if region or endpoint_url:
        options["region_name"] = region or session.region_name or "us-east-1"
    return lambda service: make_client(service, **options)


def reason_of(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return response.get("Error", {}).get("Message") or str(error)


# ---------------------------------------------------------------------- starting a run
def upload_csv(stack: CollageStack, path: Path, key: str) -> tuple[str, datetime]:
    """Upload under csv-files/; return the key and the moment S3 stored it."""
    from collage.runs import CSV_PREFIX

    if not key.startswith(CSV_PREFIX) or not key.lower().endswith(".csv"):
        raise StackError(f"runs start for keys under {CSV_PREFIX} ending in .csv, not {key!r}")
    s3, bucket = stack.client("s3"), stack.outputs["InputBucketName"]
    s3.upload_file(str(path), bucket, key)  # multipart above 8 MB
    stored = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    return key, stored


def find_upload_run(
    stack: CollageStack, key: str, stored: datetime, timeout: float, poll: float
) -> str:
    """The execution the upload's event started: named after the CSV, started after the upload,
    with the key in its input (the name's hash covers the event's sequencer, so it is found,
    not computed)."""
    from collage.naming import csv_stem, execution_label

    prefix, since = execution_label(csv_stem(key)) + "-", stored - timedelta(seconds=1)
    checked: set[str] = set()
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        for execution in _executions_since(stack, since):
            arn = execution["executionArn"]
            if arn in checked or not execution["name"].startswith(prefix):
                continue
            checked.add(arn)
            if _input_key(stack, arn) == key:
                return str(arn)
        time.sleep(poll)
    raise StackError(
        f"no execution started for s3://{stack.outputs['InputBucketName']}/{key} within "
        f"{timeout:.0f} s: see the dead-letter queue ({stack.outputs.get('DeadLetterQueueUrl')}) "
        "and the StartFromS3 function's log"
    )


def _executions_since(stack: CollageStack, since: datetime) -> Iterator[dict[str, Any]]:
    """The state machine's executions started at `since` or later, newest first."""
    pages = stack.client("stepfunctions").get_paginator("list_executions")
    for page in pages.paginate(stateMachineArn=stack.state_machine):
        for execution in page["executions"]:
            if execution["startDate"] < since:
                return
            yield execution


def _input_key(stack: CollageStack, execution_arn: str) -> str | None:
    described = stack.client("stepfunctions").describe_execution(executionArn=execution_arn)
    document = json.loads(described.get("input") or "{}")
    return document.get("run", {}).get("source_key")


def send_message(stack: CollageStack, body: str) -> str:
    """Check the message with the starter's own rules, send it, return its execution's name."""
    from collage.config import ProcessingConfig
    from collage.runs import MessageError, message_execution_name, run_from_message

    try:
        run_from_message("check", body, datetime.now(UTC), "input", ProcessingConfig())
    except MessageError as error:
        raise StackError(f"the message would be refused: {error}") from None
    queue = stack.outputs["ProcessingQueueUrl"]
    sent = stack.client("sqs").send_message(QueueUrl=queue, MessageBody=body)
    return message_execution_name(sent["MessageId"])


def wait_for_start(stack: CollageStack, name: str, timeout: float, poll: float) -> str:
    """The execution's ARN once the starter has started it."""
    sfn, arn = stack.client("stepfunctions"), stack.execution_arn(name)
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            sfn.describe_execution(executionArn=arn)
            return arn
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(poll)
    raise StackError(
        f"execution {name} did not start within {timeout:.0f} s: see the dead-letter queue "
        f"({stack.outputs.get('DeadLetterQueueUrl')}) and the StartFromSqs function's log"
    )


# ---------------------------------------------------------------------- following a run
def follow(
    stack: CollageStack,
    execution_arn: str,
    show: Callable[[Snapshot], None],
    *,
    poll: float,
    timeout: float,
) -> dict[str, Any]:
    """Poll the execution until it ends, showing where it is; return describe-execution."""
    sfn = stack.client("stepfunctions")
    ends = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        show(_snapshot(sfn, described))  # a finished run's too: its final counts
        if described["status"] in TERMINAL:
            return dict(described)
        if time.monotonic() > ends:
            raise StackError(f"{execution_arn} still {described['status']} after {timeout:.0f} s")
        time.sleep(poll)


def _map_counts(sfn: Any, execution_arn: str) -> dict[str, int] | None:
    """The item counts of the execution's map run, once it has one."""
    try:
        runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        if not runs:
            return None
        return dict(sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"])
    except Exception:  # moto fails on an execution between its worker's start and end
        return None


def _snapshot(sfn: Any, described: dict[str, Any]) -> Snapshot:
    ended = described.get("stopDate") or datetime.now(UTC)
    elapsed = max((ended - described["startDate"]).total_seconds(), 0.0)
    history = _latest_first(sfn, described["executionArn"], page=20)
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    ]
    state = entered[0] if entered else "starting"
    counts = _map_counts(sfn, described["executionArn"])
    if counts is None:
        return Snapshot(state, elapsed)
    return Snapshot(
        state,
        elapsed,
        total=counts.get("total", 0),
        done=counts.get("succeeded", 0),
        failed=sum(counts.get(k, 0) for k in ("failed", "timedOut", "aborted")),
        pending=counts.get("pending", 0) + counts.get("running", 0),
    )


def _latest_first(sfn: Any, execution_arn: str, page: int = 1000) -> list[dict[str, Any]]:
    """The execution's last events, newest first (sorted too: moto ignores reverseOrder)."""
    events = sfn.get_execution_history(
        executionArn=execution_arn, reverseOrder=True, maxResults=page
    )["events"]
    return sorted(events, key=lambda event: event["id"], reverse=True)


def run_summary(stack: CollageStack, described: dict[str, Any]) -> dict[str, Any]:
    """The execution's output; for a failed run, the output of its last reporting step."""
    if described.get("output"):
        return dict(json.loads(described["output"]))
    for event in _latest_first(stack.client("stepfunctions"), described["executionArn"]):
        details = event.get("stateExitedEventDetails") or {}
        if details.get("name") in REPORTING_STEPS and details.get("output"):
            return dict(json.loads(details["output"]))
    return {"status": "failed", "error": described.get("error"), "cause": described.get("cause")}


def outcome(described: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """None when the run succeeded, else why it did not (the exit status follows it)."""
    if described["status"] != "SUCCEEDED" or summary.get("status") == "failed":
        error = summary.get("error")
        if isinstance(error, dict) and error.get("reason"):
            why = f"{error.get('stage', 'run')} step: {error['reason']}"
        else:
            why = described.get("cause") or described.get("error") or "see the report"
        return f"run {described['status'].lower()}: {why}"
    if summary.get("collages") == 0 and summary.get("creators", {}).get("total"):
        return "no collage could be rendered: every cover failed (see the report)"
    return None


# ---------------------------------------------------------------------- fetching results
_S3_URI = re.compile(r"^s3://([^/]+)/(.*)$")


def download_run(stack: CollageStack, summary: dict[str, Any], directory: Path) -> list[Path]:
    """The run's report and collages, each under `directory` at its S3 key (never outside it)."""
    from collage.layout import report_timestamp

    found = _S3_URI.match(str(summary.get("report", "")))
    stamp = report_timestamp(found.group(2)) if found else None
    if not found or not stamp:
        return []
    bucket, prefix = found.group(1), found.group(2).rsplit("/", 1)[0] + "/"
    s3, root, written = stack.client("s3"), directory.resolve(), []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if f"_{stamp}" not in item["Key"]:
                continue  # another run's collages in the same folder
            target = (root / item["Key"]).resolve()
            if not target.is_relative_to(root):
                raise StackError(f"refusing to write {item['Key']!r} outside {root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            written.append(target)
    return written
