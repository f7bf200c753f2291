"""What the local stack changes in moto and in this process, each undone when the stack closes.

Each function here makes one change and registers its undo on the stack's `ExitStack`, so the
stack closes in the reverse order it opened. The bridges are numbered as in emulator.py's
docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any

SDK_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk"  # noqa: E501
# Lambda's answer to an invocation: the payload, with x-amz-function-error in the headers when
# it is an error document.
CallFunction = Callable[[str, Any, dict[str, Any]], Any]


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


def copy_source_verbatim(scope: contextlib.ExitStack) -> None:
    """Bridge 6: the state machine's aws-sdk S3 calls send CopySource as the ASL wrote it."""
    module: Any = import_module(SDK_TASKS)
    scope.callback(setattr, module, "boto_client_for", module.boto_client_for)
    module.boto_client_for = sdk_client_maker(module.boto_client_for)


def dispatch_lambda(scope: contextlib.ExitStack, call_function: CallFunction) -> None:
    """Bridge 1: moto's Lambda Invoke answered by `call_function(name, event, headers)`."""
    from moto.awslambda.models import LambdaBackend

    def invoke(backend, function_name, qualifier, body, headers, response_headers):
        name = function_name.rsplit(":function:", 1)[-1].split(":")[0]
        payload = call_function(name, json.loads(body or "{}"), response_headers)
        data = json.dumps(payload).encode()
        response_headers["Content-Length"] = str(len(data))
        return data

    scope.callback(setattr, LambdaBackend, "invoke", LambdaBackend.invoke)
    LambdaBackend.invoke = invoke  # type: ignore[method-assign]


def deep_recursion(scope: contextlib.ExitStack) -> None:
    """Bridge 5: moto's map worker recurses once per item, so the recursion limit and the
    stack size of the threads started from now on are raised."""
    saved = sys.getrecursionlimit()
    scope.callback(sys.setrecursionlimit, saved)
    scope.callback(threading.stack_size, 0)
    sys.setrecursionlimit(max(saved, 200_000))
    threading.stack_size(512 * 1024 * 1024)  # virtual; only touched pages are used


class Environment:
    """Environment variables set for the stack's life; `restore` puts back what was there."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
