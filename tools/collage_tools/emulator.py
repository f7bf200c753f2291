"""An embedded local AWS (moto) that runs the real state machine with the real handlers.

What is real: the buckets and queues, the ASL in `statemachine/` (interpreted by moto's port of
LocalStack's Step Functions engine), the handlers named in `template.yaml` with the template's
environment and parameter defaults, SQS receive counts and the dead-letter redrive.

What this module bridges, because moto cannot do it without Docker or does not do it at all
(see shared notes "offline-aws.md"):
1. Lambda invocation: `LambdaBackend.invoke` is replaced by a dispatcher to the local Lambda
   runtime (`lambda_runtime.py`): each function's invocations run in worker processes (warm
   ones reused), at most its concurrency at once, with the template's `Timeout` and
   `MemorySize` enforced, and errors reported as AWS reports them (`x-amz-function-error:
   Unhandled` and an `errorType` that Retry/Catch match on: the handler's exception,
   `Sandbox.Timedout`, `Runtime.OutOfMemory`). The workers reach this stack as a function
   reaches AWS: over HTTP, through moto's server on 127.0.0.1 (`endpoint`), with the stack's
   credentials. `lambda_isolation="inline"` calls the handlers in threads of this process
   instead (no limits enforced): only for tests whose fault injection lives in this process's
   clients (the IAM harness, S3 faults).
2. EXPRESS map children: moto parses only STANDARD, so `MapExecutionType` is substituted with
   STANDARD here (the deployed template keeps EXPRESS).
3. EventBridge -> Lambda for S3 uploads: moto's event differs from AWS's (`eTag` vs `etag`)
   and moto has no Lambda rule target, so `upload_csv` builds the AWS-shaped "Object Created"
   event and invokes the starter (or, with `triggers=True`, every upload does: see triggers.py).
4. SQS -> Lambda: moto's event source mapping sends one message per call with a fixed
   timestamp and ignores partial batch responses, so `deliver_messages` polls the queue like
   Lambda's event source mapping does (batches, real attributes, `batchItemFailures`); with
   `triggers=True` a poller thread calls it, as the mapping would.
5. The map's recursion depth: moto's map worker recurses once per item, so the recursion
   limit and the thread stack size are raised before any worker thread starts.
6. The state machine's aws-sdk S3 calls send CopySource as the ASL wrote it, as Step
   Functions does (botocore, which moto calls with, would percent-encode it a second time).
7. Memory at scale (bounded.py): a map child's events are not kept, the map's items are read
   one at a time from a file, and buckets given a folder (`folders`) keep their objects
   there instead of in memory.

This module assembles the stack and keeps its state; the parts are in modules of their own:
stack_template.py reads template.yaml, stack_resources.py creates its resources in moto,
moto_bridges.py holds bridges 1, 5 and 6 (each undone when the stack closes), aws_shapes.py
the events and the context object in AWS's shapes, inline_lambda.py the inline isolation,
triggers.py bridges 3 and 4 when they run by themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collage_tools.aws_shapes import (
    ACCOUNT,
    REGION,
    LambdaContext,
    received_message,
    s3_object_created_event,
    sqs_record,
)
from collage_tools.inline_lambda import Handler, InlineCalls, build_handler
from collage_tools.moto_bridges import (
    SDK_TASKS,
    Environment,
    copy_source_verbatim,
    deep_recursion,
    dispatch_lambda,
    sdk_client_maker,
    verbatim_copy_source,
)
from collage_tools.stack_resources import (
    BUCKETS,
    QUEUES,
    STACK,
    create_buckets,
    create_functions,
    create_queues,
    create_state_machine,
    create_upload_rule,
    name_state_machine,
    register_stack,
)
from collage_tools.stack_template import LocalTemplate

# The names the tests, the commands and the triggers import from here.
__all__ = [
    "ACCOUNT",
    "BUCKETS",
    "QUEUES",
    "REGION",
    "SDK_TASKS",
    "STACK",
    "TERMINAL",
    "FunctionError",
    "LambdaContext",
    "LocalStack",
    "project_root",
    "received_message",
    "running_stack",
    "s3_object_created_event",
    "sdk_client_maker",
    "sqs_record",
    "verbatim_copy_source",
]

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# What a Lambda function finds in its environment, as far as the handlers read it.
LAMBDA_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    # Metrics stay on: Powertools' EMF store only empties when it flushes, so a
    # disabled store would grow for the whole run. Their lines go to stdout.
    "POWERTOOLS_METRICS_DISABLED": "false",
    "POWERTOOLS_DEV": "false",
}


def project_root() -> Path:
    """The checkout holding template.yaml (the package is installed from it in editable mode)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "template.yaml").is_file() and (parent / "statemachine").is_dir():
            return parent
    raise FileNotFoundError("template.yaml not found above collage_tools/: run from a checkout")


class LocalStack:
    """The whole stack on moto. Use as a context manager; everything is gone on exit.

    With `triggers=True` the triggers run by themselves, as on AWS: an object put under
    csv-files/ by any client starts a run, and queued messages are polled and delivered.
    Without it, tests deliver them step by step (`upload_csv`, `deliver_messages`).
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        root: Path | None = None,
        verbose: bool = False,
        triggers: bool = False,
        lambda_isolation: str = "process",
        port: int = 0,
        render_concurrency: int | None = None,
        folders: dict[str, Path] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        if lambda_isolation not in ("process", "inline"):
            raise ValueError(
                f"lambda_isolation must be process or inline, not {lambda_isolation!r}"
            )
        self.root = root or project_root()
        self.lambda_isolation = lambda_isolation
        self.port = port
        self.render_concurrency = render_concurrency or os.cpu_count() or 1
        self.runtime: Any = None  # the LambdaRuntime, in process isolation
        self.server: Any = None  # moto's server, in process isolation
        self.endpoint = ""
        # Buckets kept in folders (logical id -> folder): see bounded.FolderBuckets.
        self.folders = dict(folders or {})
        self.work_dir = work_dir
        self.allow_loopback = allow_loopback
        self.verbose = verbose
        self._triggers: Any = None
        self._wire_triggers = triggers
        self._scope = contextlib.ExitStack()  # what __exit__ undoes, last done first undone
        self._env = Environment()
        self.functions: dict[str, dict[str, Any]] = {}  # function name -> spec
        self._handlers: dict[str, Handler] = {}  # function name -> handler (inline)
        self._clients: dict[str, Any] = {}  # service -> client (sqs, lambda, iam)
        self.names: dict[str, str] = {}  # logical id -> physical name / ARN / URL
        self._inline = InlineCalls()  # handler calls under way (stop_runs waits for them)
        # SQS messages by their body's sha256: the id and SentTimestamp each was first delivered
        # with (`delivered`), and those a resumed `collage run --message` delivers it with again
        # (`message_replay`), so the same message is the same run (execution name, timestamp).
        self.delivered: dict[str, dict[str, str]] = {}
        self.message_replay: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------ set-up
    def __enter__(self) -> LocalStack:
        try:
            self._open()
        except BaseException:
            self._scope.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._scope.close()

    def _open(self) -> None:
        """Set the stack up, each step's undo on the exit stack (bridges as numbered above)."""
        scope = self._scope
        scope.callback(self._env.restore)
        deep_recursion(scope)  # bridge 5
        self._template = LocalTemplate(self.root, self.names)
        self.template = self._template.data
        self._set_env(LAMBDA_ENV)
        if not self.verbose:
            # moto logs every ASL failure with its whole parse tree; the report names them.
            logging.getLogger("moto").setLevel(logging.CRITICAL)
            warnings.filterwarnings("ignore", message="No application metrics to publish")
        self._start_moto()
        copy_source_verbatim(scope)  # bridge 6
        dispatch_lambda(scope, self.call_function)  # bridge 1
        self._install_bounds()
        if self.lambda_isolation == "process":
            self._start_server()
        self._create_resources()
        if self.lambda_isolation == "process":
            self._start_runtime()
        if self._wire_triggers:
            from collage_tools.triggers import Triggers

            self._triggers = Triggers(self).start()
            scope.callback(self._triggers.stop)

    @property
    def triggers(self) -> Any:
        """The running triggers (with `triggers=True`), else None."""
        return self._triggers

    def _start_moto(self) -> None:
        from moto import mock_aws

        from collage.aws import Store

        mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        mock.start()
        self._scope.callback(mock.stop)
        self.store = Store()  # clients made under the mock, on first use

    def _install_bounds(self) -> None:
        """Bridge 7: what keeps memory flat at scale (bounded.py says what grew, and why)."""
        from collage_tools.bounded import BoundedEngine, FolderBuckets

        self._scope.callback(BoundedEngine(self.work_dir).install().uninstall)
        if self.folders:
            buckets = FolderBuckets()
            for logical, folder in self.folders.items():
                buckets.add(f"{STACK}-{BUCKETS[logical]}", Path(folder))
            self._scope.callback(buckets.install().uninstall)

    def _set_env(self, values: dict[str, str]) -> None:
        self._env.set(values)

    def _create_resources(self) -> None:
        template = self._template
        create_buckets(self.store.s3, template)
        create_queues(self.client("sqs"), template)
        name_state_machine(template)
        self.functions.update(create_functions(self.client("iam"), self.client("lambda"), template))
        self._set_env(self._shared_variables())
        create_state_machine(self.store.sfn, template)
        create_upload_rule(self.client("events"), template)
        register_stack(self.client("cloudformation"), self.outputs())

    def _shared_variables(self) -> dict[str, str]:
        """One process (inline handlers): every function's variables together (they agree on
        shared names)."""
        variables = {
            key: value
            for spec in self.functions.values()
            for key, value in self._template.resolved_env(spec["env"]).items()
        }
        if not self.verbose:  # a local run shows progress and problems, not every INFO line
            variables["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        return variables

    def outputs(self) -> dict[str, str]:
        """The template's Outputs that name a resource, with this stack's values."""
        return self._template.outputs()

    # ------------------------------------------------------------------ bridge 1: Lambda
    def _start_server(self) -> None:
        """moto's server on 127.0.0.1 over this stack's backends: how the workers reach AWS."""
        from moto.server import ThreadedMotoServer

        if not self.verbose:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=self.verbose)
        server.start()
        self.server = server
        host, bound = server.get_host_and_port()
        self.endpoint = f"http://{host}:{bound}"
        self._scope.callback(server.stop)

    def _start_runtime(self) -> None:
        from collage_tools.lambda_runtime import LambdaRuntime

        specs = {name: self._function_spec(name, spec) for name, spec in self.functions.items()}
        self.runtime = LambdaRuntime(specs, quiet=not self.verbose).start()
        self._scope.callback(self.runtime.stop)

    def _function_spec(self, name: str, spec: dict[str, Any]) -> Any:
        """The local runtime's spec of a function: the template's settings, and the variables
        Lambda adds (the endpoint is this stack's server)."""
        from collage_tools.lambda_runtime import FunctionSpec

        env = self._template.resolved_env(spec["env"])
        if not self.verbose:
            env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
                "COLLAGE_LOCAL_ALLOW_LOOPBACK": "1" if self.allow_loopback else "0",
            }
        )
        return FunctionSpec(
            name=name,
            handler=spec["handler"],
            timeout=spec["timeout"],
            memory=spec["memory"],
            env=env,
            concurrency=(self.render_concurrency if spec["logical"] == "RenderFunction" else 10),
            arn=self.names[f"{spec['logical']}.Arn"],
        )

    def function_name(self, logical: str) -> str:
        return str(self.names[logical])

    def call_function(
        self, name: str, event: Any, response_headers: dict[str, Any] | None = None
    ) -> Any:
        """Invoke a function as Lambda would: its answer, or its error document (with
        `x-amz-function-error` in `response_headers`; raised when there are none)."""
        if self.runtime is not None:
            answer = self.runtime.invoke(name, event)
            if not answer.failed:
                return answer.payload
            if response_headers is None:
                raise FunctionError(answer.payload)
            response_headers["x-amz-function-error"] = answer.function_error
            return answer.payload
        return self._call_inline(name, event, response_headers)

    def _call_inline(
        self, name: str, event: Any, response_headers: dict[str, Any] | None = None
    ) -> Any:
        """Run a function's handler in a thread of this process (lambda_isolation="inline")."""
        spec = self.functions[name]
        handler = self._handlers.get(name) or self._wire(name)
        context = LambdaContext(name, spec["timeout"], spec["memory"])
        return self._inline.call(handler, event, context, response_headers)

    def stop_runs(self, grace: float) -> int:
        """Stop the runs under way: from now on no function starts (a step's invocation fails
        at once), and the handler calls under way get up to `grace` seconds to return. Returns
        how many executions were running. (No StopExecution: the process ends next, and
        nothing of moto's engine needs to be waited for.)"""
        pages = self.store.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.names["CollageStateMachine"], statusFilter="RUNNING"
        )
        running = sum(len(page["executions"]) for page in pages)
        self._inline.close(grace)
        if self.runtime is not None:
            self.runtime.kill()  # its workers are processes: none may outlive the stack
        return running

    def client(self, service: str) -> Any:
        """One client per service for this stack (made under the mock, reused by every call)."""
        from collage.aws import make_client

        if service not in self._clients:
            self._clients[service] = make_client(service)
        return self._clients[service]

    def store_for(self, logical: str) -> Any:
        """The Store a function's handler is wired with (one for the whole stack here)."""
        return self.store

    def _wire(self, name: str) -> Handler:
        """The function's handler, built as Lambda would build it from the template's
        variables, but with the local SSRF policy and this stack's Store (`store_for`)."""
        spec = self.functions[name]
        env = self._template.resolved_env(spec["env"])
        store = self.store_for(spec["logical"])
        handler = build_handler(spec["handler"], env, store, self.allow_loopback)
        self._handlers[name] = handler
        return handler

    # ------------------------------------------------------------------ triggers
    def upload_csv(self, data: bytes, key: str) -> dict[str, Any]:
        """Put a CSV in the input bucket and deliver its EventBridge event (bridge 3)."""
        bucket = self.names["InputBucket"]
        put = self.store.s3.put_object(Bucket=bucket, Key=key, Body=data)
        event = s3_object_created_event(bucket, key, len(data), put["ETag"].strip('"'))
        return self.invoke("StartFromS3Function", event)

    def invoke(self, logical: str, event: Any) -> Any:
        """Invoke a function through the Lambda API (and so through the dispatcher)."""
        response = self.client("lambda").invoke(
            FunctionName=self.names[logical], Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise RuntimeError(
                f"{logical} failed: {payload.get('errorType')}: {payload.get('errorMessage')}"
            )
        return payload

    def send_message(self, body: str) -> str:
        sent = self.client("sqs").send_message(
            QueueUrl=self.names["ProcessingQueue"], MessageBody=body
        )
        return sent["MessageId"]

    def deliver_messages(self, batch_size: int = 10) -> list[dict[str, Any]]:
        """Bridge 4: one poll of the queue, as Lambda's SQS event source mapping does it."""
        sqs, queue = self.client("sqs"), self.names["ProcessingQueue"]
        received = sqs.receive_message(
            QueueUrl=queue,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not received:
            return []
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        shown = [self._as_first_delivered(message) for message in received]
        failed = self._deliver(shown, queue_arn["Attributes"]["QueueArn"])
        for message in shown:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [
            {"message_id": m["MessageId"], "started": m["MessageId"] not in failed} for m in shown
        ]

    def _as_first_delivered(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message with the id and SentTimestamp it had when first delivered, if it is one
        a resumed run sends again; remembered in `delivered` either way."""
        digest = hashlib.sha256(message["Body"].encode("utf-8", "surrogatepass")).hexdigest()
        first = self.message_replay.pop(digest, None)
        if first:
            attributes = {**message.get("Attributes", {}), "SentTimestamp": first["sent"]}
            message = {**message, "MessageId": first["message_id"], "Attributes": attributes}
        sent = message.get("Attributes", {}).get("SentTimestamp", "")
        self.delivered[digest] = {"message_id": message["MessageId"], "sent": sent}
        return message

    def _deliver(self, received: list[dict[str, Any]], queue_arn: str) -> set[str]:
        """The batch to the SQS starter; the ids of the messages it failed (all, if it did)."""
        event = {"Records": [sqs_record(m, queue_arn) for m in received]}
        try:
            response = self.invoke("StartFromSqsFunction", event) or {}
            return {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except RuntimeError:
            return {m["MessageId"] for m in received}  # the whole batch failed

    # ------------------------------------------------------------------ watching
    def execution_arn(self, name: str) -> str:
        machine = self.names["CollageStateMachine"]
        return machine.replace(":stateMachine:", ":execution:") + ":" + name

    def wait(self, name: str, timeout: float = 3600.0) -> dict[str, Any]:
        """Poll the execution until it ends (tests; the commands follow runs with stack_client)."""
        sfn = self.store.sfn
        arn, ends = self.execution_arn(name), time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] in TERMINAL:
                return dict(described)
            if time.monotonic() > ends:
                raise TimeoutError(
                    f"execution {name} still {described['status']} after {timeout:.0f} s"
                )
            time.sleep(0.2)


class FunctionError(RuntimeError):
    """A function's invocation failed; `document` is its error as the Lambda API returns it."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__(f"{document.get('errorType')}: {document.get('errorMessage')}")
        self.document = document


@contextlib.contextmanager
def running_stack(
    *,
    allow_loopback: bool,
    verbose: bool,
    port: int = 0,
    render_concurrency: int | None = None,
    folders: dict[str, Path] | None = None,
    work_dir: Path | None = None,
) -> Iterator[LocalStack]:
    """The stack of `collage run` and `serve`, its triggers running by themselves. Handlers
    print metrics (CloudWatch EMF lines) on stdout, which the commands keep for their own
    output: they go to stderr with `verbose` and are dropped otherwise."""
    with contextlib.ExitStack() as scope:
        quiet = open(os.devnull, "w")  # noqa: SIM115 - closed by the exit stack
        sink = sys.stderr if verbose else scope.enter_context(quiet)
        scope.enter_context(contextlib.redirect_stdout(sink))
        yield scope.enter_context(
            LocalStack(
                allow_loopback=allow_loopback,
                verbose=verbose,
                triggers=True,
                port=port,
                render_concurrency=render_concurrency,
                folders=folders,
                work_dir=work_dir,
            )
        )
