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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "collage-local"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# The resources of template.yaml that the local stack creates, by logical id.
BUCKETS = {"InputBucket": "input", "OutputBucket": "output", "TempBucket": "temp"}
QUEUES = ("ProcessingQueue", "ProcessingDeadLetterQueue")


SDK_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk"  # noqa: E501


def sdk_client_maker(make: Callable[..., Any]) -> Callable[..., Any]:
    """moto's client factory for aws-sdk tasks, its S3 clients sending CopySource verbatim."""

    def client_for(*args: Any, **kwargs: Any) -> Any:
        return verbatim_copy_source(make(*args, **kwargs))

    return client_for


def verbatim_copy_source(client: Any) -> Any:
    """An S3 client that sends a CopySource string as given: Step Functions' SDK integration
    does not encode it (the ASL must), botocore would."""
    from botocore.handlers import handle_copy_source_param

    for event in (
        "before-parameter-build.s3.CopyObject",
        "before-parameter-build.s3.UploadPartCopy",
    ):
        client.meta.events.unregister(event, handle_copy_source_param)
    return client


def project_root() -> Path:
    """The checkout holding template.yaml (the package is installed from it in editable mode)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "template.yaml").is_file() and (parent / "statemachine").is_dir():
            return parent
    raise FileNotFoundError("template.yaml not found above collage_tools/: run from a checkout")


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout: float, memory: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends - time.monotonic()) * 1000), 0)


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
        self._bounded: list[Any] = []
        self.allow_loopback = allow_loopback
        self.verbose = verbose
        self._triggers: Any = None
        self._wire_triggers = triggers
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_invoke: Any = None
        self.functions: dict[str, dict[str, Any]] = {}  # function name -> spec
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}  # function name -> handler
        self._clients: dict[str, Any] = {}  # service -> client (sqs, lambda, iam)
        self._sdk_module: Any = None
        self._sdk_client_for: Any = None
        self.names: dict[str, str] = {}  # logical id -> physical name / ARN / URL
        self._calls = 0  # handler calls under way (stop_runs waits for them)
        self._closing = False  # set by stop_runs: no handler call starts any more
        self._idle = threading.Condition()

    # ------------------------------------------------------------------ set-up
    def __enter__(self) -> LocalStack:
        from samcli.yamlhelper import yaml_parse

        self.template = yaml_parse((self.root / "template.yaml").read_text())
        self._saved_recursion_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(self._saved_recursion_limit, 200_000))
        threading.stack_size(512 * 1024 * 1024)  # virtual; only touched pages are used
        self._set_env(
            {
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
        )
        if not self.verbose:
            # moto logs every ASL failure with its whole parse tree; the report names them.
            logging.getLogger("moto").setLevel(logging.CRITICAL)
            warnings.filterwarnings("ignore", message="No application metrics to publish")
        from moto import mock_aws

        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        from collage.aws import Store

        self.store = Store()  # clients made under the mock, on first use
        self._sdk_module = import_module(SDK_TASKS)
        self._sdk_client_for = self._sdk_module.boto_client_for
        self._sdk_module.boto_client_for = sdk_client_maker(self._sdk_client_for)
        self._install_bounds()
        if self.lambda_isolation == "process":
            self._start_server()
        self._install_lambda_dispatcher()
        self._create_resources()
        if self.lambda_isolation == "process":
            self._start_runtime()
        if self._wire_triggers:
            from collage_tools.triggers import Triggers

            self._triggers = Triggers(self).start()
        return self

    def __exit__(self, *exc: object) -> None:
        from moto.awslambda.models import LambdaBackend

        if self._triggers is not None:
            self._triggers.stop()
        if self.runtime is not None:
            self.runtime.stop()
        if self.server is not None:
            self.server.stop()
        while self._bounded:
            self._bounded.pop().uninstall()
        if self._saved_invoke is not None:
            LambdaBackend.invoke = self._saved_invoke  # type: ignore[method-assign]
        if self._sdk_client_for is not None:
            self._sdk_module.boto_client_for = self._sdk_client_for
        if self._mock is not None:
            self._mock.stop()
        threading.stack_size(0)
        sys.setrecursionlimit(self._saved_recursion_limit)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @property
    def triggers(self) -> Any:
        """The running triggers (with `triggers=True`), else None."""
        return self._triggers

    def _install_bounds(self) -> None:
        """Bridge 6: what keeps memory flat at scale (bounded.py says what grew, and why)."""
        from collage_tools.bounded import BoundedEngine, FolderBuckets

        self._bounded.append(BoundedEngine(self.work_dir).install())
        if self.folders:
            buckets = FolderBuckets()
            for logical, folder in self.folders.items():
                buckets.add(f"{STACK}-{BUCKETS[logical]}", Path(folder))
            self._bounded.append(buckets.install())

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _resolve(self, value: Any) -> Any:
        """Template values: parameter defaults and the local resources' names for `!Ref`."""
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in self.names:
                return self.names[ref]
            parameter = self.template.get("Parameters", {}).get(ref)
            if parameter is not None:
                return str(parameter.get("Default", ""))
            raise KeyError(f"template reference {ref!r} has no local value")
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            return self.names[f"{target}.{attribute}"]
        return value

    def _resolve_all(self, value: Any) -> Any:
        """`_resolve` through nested lists and mappings (an event pattern, say)."""
        value = self._resolve(value)
        if isinstance(value, dict):
            return {key: self._resolve_all(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._resolve_all(item) for item in value]
        return value

    def _create_resources(self) -> None:
        s3, sqs = self.store.s3, self.client("sqs")
        for logical, short in BUCKETS.items():
            name = f"{STACK}-{short}"
            s3.create_bucket(Bucket=name)
            self.names[logical] = name
        s3.put_bucket_notification_configuration(  # EventBridgeEnabled, as in the template
            Bucket=self.names["InputBucket"],
            NotificationConfiguration={"EventBridgeConfiguration": {}},
        )
        dlq = sqs.create_queue(QueueName=f"{STACK}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
        queue_props = self.template["Resources"]["ProcessingQueue"]["Properties"]
        redrive = {
            "deadLetterTargetArn": dlq_arn["QueueArn"],
            "maxReceiveCount": str(queue_props["RedrivePolicy"]["maxReceiveCount"]),
        }
        queue = sqs.create_queue(
            QueueName=f"{STACK}-queue",
            Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "0"},
        )["QueueUrl"]
        self.names.update({"ProcessingQueue": queue, "ProcessingDeadLetterQueue": dlq})

        machine_name = f"{STACK}-collage-workflow"
        machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine_name}"
        self.names["CollageStateMachine"] = machine_arn
        self._create_functions()
        self._create_state_machine(machine_name)
        self._create_upload_rule()
        self._register_stack()

    def _create_upload_rule(self) -> None:
        """The EventBridge rule SAM makes of StartFromS3Function's CsvUploaded event."""
        event = self.template["Resources"]["StartFromS3Function"]["Properties"]["Events"]
        pattern = self._resolve_all(event["CsvUploaded"]["Properties"]["Pattern"])
        events, rule = self.client("events"), f"{STACK}-CsvUploaded"
        events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
        target = self.names["StartFromS3Function.Arn"]
        events.put_targets(Rule=rule, Targets=[{"Id": "StartFromS3", "Arn": target}])

    def _register_stack(self) -> None:
        """A CloudFormation stack named STACK whose outputs are the template's, with the local
        values, so `describe-stacks` finds this stack's resources as it finds a deployed one's."""
        values = self.outputs()
        template = {
            "Resources": {"LocalStack": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {key: {"Value": value} for key, value in values.items()},
        }
        with warnings.catch_warnings():  # moto names the placeholder resource it skips
            warnings.simplefilter("ignore", UserWarning)
            self.client("cloudformation").create_stack(
                StackName=STACK, TemplateBody=json.dumps(template)
            )

    def outputs(self) -> dict[str, str]:
        """The template's Outputs that name a resource, with this stack's values."""
        outputs = {}
        for key, output in self.template.get("Outputs", {}).items():
            try:  # outputs of resources the local stack has not (the alarm topic, the console)
                value = self._resolve(output["Value"])
            except KeyError:
                continue
            if isinstance(value, str):
                outputs[key] = value
        return outputs

    def _create_functions(self) -> None:
        import io
        import zipfile

        iam = self.client("iam")
        role = iam.create_role(
            RoleName="collage-local-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("placeholder.py", "# handlers run in-process\n")
        globals_ = self.template.get("Globals", {}).get("Function", {})
        shared_env = globals_.get("Environment", {}).get("Variables", {})
        for logical, resource in self.template["Resources"].items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            name = f"{STACK}-{logical}"
            response = self.client("lambda").create_function(
                FunctionName=name,
                Runtime=globals_.get("Runtime", "python3.13"),
                Role=role,
                Handler=props["Handler"],
                Code={"ZipFile": archive.getvalue()},
            )
            self.names[logical] = name
            self.names[f"{logical}.Arn"] = response["FunctionArn"]
            self.functions[name] = {
                "logical": logical,
                "handler": props["Handler"],
                "timeout": float(self._resolve(props.get("Timeout", globals_.get("Timeout", 60)))),
                "memory": int(
                    self._resolve(props.get("MemorySize", globals_.get("MemorySize", 512)))
                ),
                "env": {**shared_env, **props.get("Environment", {}).get("Variables", {})},
            }
        # One process: every function's variables together (they agree on shared names).
        variables = {
            key: str(self._resolve(value))
            for spec in self.functions.values()
            for key, value in spec["env"].items()
        }
        if not self.verbose:  # a local run shows progress and problems, not every INFO line
            variables["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        self._set_env(variables)

    def _create_state_machine(self, machine_name: str) -> None:
        props = self.template["Resources"]["CollageStateMachine"]["Properties"]
        definition = (self.root / props["DefinitionUri"]).read_text()
        substitutions = {
            key: self._resolve(value) for key, value in props["DefinitionSubstitutions"].items()
        }
        substitutions["MapExecutionType"] = "STANDARD"  # bridge 2: moto rejects EXPRESS children
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(value))
        self.store.sfn.create_state_machine(
            name=machine_name,
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/collage-local-states",
            type="STANDARD",
        )

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

    def _start_runtime(self) -> None:
        from collage_tools.lambda_runtime import FunctionSpec, LambdaRuntime

        specs = {}
        for name, spec in self.functions.items():
            env = {key: str(self._resolve(value)) for key, value in spec["env"].items()}
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
            specs[name] = FunctionSpec(
                name=name,
                handler=spec["handler"],
                timeout=spec["timeout"],
                memory=spec["memory"],
                env=env,
                concurrency=(
                    self.render_concurrency if spec["logical"] == "RenderFunction" else 10
                ),
                arn=self.names[f"{spec['logical']}.Arn"],
            )
        self.runtime = LambdaRuntime(specs, quiet=not self.verbose).start()

    def _install_lambda_dispatcher(self) -> None:
        from moto.awslambda.models import LambdaBackend

        stack = self
        self._saved_invoke = LambdaBackend.invoke

        def invoke(backend, function_name, qualifier, body, headers, response_headers):
            name = function_name.rsplit(":function:", 1)[-1].split(":")[0]
            payload = stack.call_function(name, json.loads(body or "{}"), response_headers)
            data = json.dumps(payload).encode()
            response_headers["Content-Length"] = str(len(data))
            return data

        LambdaBackend.invoke = invoke  # type: ignore[method-assign]

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
        with self._idle:
            if self._closing:
                raise RuntimeError("the local stack is stopping")
            self._calls += 1
        try:
            return handler(event, context)
        except Exception as error:
            if response_headers is None:
                raise
            response_headers["x-amz-function-error"] = "Unhandled"
            return {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": traceback.format_tb(error.__traceback__),
            }
        finally:
            with self._idle:
                self._calls -= 1
                self._idle.notify_all()

    def stop_runs(self, grace: float) -> int:
        """Stop the runs under way: from now on no function starts (a step's invocation fails
        at once), and the handler calls under way get up to `grace` seconds to return. Returns
        how many executions were running. (No StopExecution: the process ends next, and
        nothing of moto's engine needs to be waited for.)"""
        pages = self.store.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.names["CollageStateMachine"], statusFilter="RUNNING"
        )
        running = sum(len(page["executions"]) for page in pages)
        with self._idle:
            self._closing = True
            self._idle.wait_for(lambda: self._calls == 0, timeout=grace)
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

    def _wire(self, name: str) -> Callable[[Any, Any], Any]:
        """The function's handler, built by its module's make_handler as Lambda would build it
        from the template's variables, but with the local SSRF policy and this stack's Store."""
        from collage.handlers._runtime import Runtime
        from collage_tools.loopback import local_guard

        spec = self.functions[name]
        module_name = spec["handler"].rsplit(".", 1)[0]
        env = {key: str(self._resolve(value)) for key, value in spec["env"].items()}
        module = import_module(module_name)
        base = Runtime.from_environment(module.Environment, env)
        suffixes = base.address_guard.allowed_host_suffixes
        runtime = replace(
            base,
            store=self.store_for(spec["logical"]),
            address_guard=local_guard(self.allow_loopback, suffixes),
        )
        handler = module.make_handler(runtime)
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
        event = {"Records": [sqs_record(m, queue_arn["Attributes"]["QueueArn"]) for m in received]}
        try:
            response = self.invoke("StartFromSqsFunction", event) or {}
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except RuntimeError:
            failed = {m["MessageId"] for m in received}  # the whole batch failed
        for message in received:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [
            {"message_id": m["MessageId"], "started": m["MessageId"] not in failed}
            for m in received
        ]

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


def s3_object_created_event(
    bucket: str, key: str, size: int, etag: str, reason: str = "PutObject"
) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object, in AWS's shape (`reason`: the request
    that created it: PutObject, CopyObject, CompleteMultipartUpload, ...)."""
    now = datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "sequencer": f"{time.time_ns():X}"},
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": ACCOUNT,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


def received_message(
    message_id: str, body: str, sent_ms: int = 1737282600000, receive_count: int = 1
) -> dict[str, Any]:
    """A message as ReceiveMessage returns it, with the attributes SQS always gives Lambda."""
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"handle-{message_id}",
        "Body": body,
        "Attributes": {
            "SentTimestamp": str(sent_ms),
            "ApproximateReceiveCount": str(receive_count),
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 5),
            "SenderId": "AIDAEXAMPLE",
        },
    }


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A received SQS message as a record of Lambda's SQS event."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
