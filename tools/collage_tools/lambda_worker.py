"""One Lambda execution environment of the local runtime: a process that runs one function.

Started by `collage_tools.lambda_runtime` as `python -m collage_tools.lambda_worker`, with the
function's environment (the template's variables, the local endpoint in AWS_ENDPOINT_URL and
the function's credentials, as Lambda hands them to a function). It builds the handler once
(the cold start), then answers invocations one at a time, as an execution environment does:
a request is a length-prefixed JSON document on stdin, the answer one on the protocol pipe.
The handler's own stdout (Powertools' metric lines) goes to stderr, so it never mixes with
the answers.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback
from dataclasses import replace
from importlib import import_module
from typing import Any, BinaryIO

HEADER = struct.Struct("!I")
END_OF_LOGS = "\x00collage-end-of-invocation"


def read_message(stream: BinaryIO) -> Any:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return json.loads(data)


def write_message(stream: BinaryIO, message: Any) -> None:
    data = json.dumps(message).encode()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


class Context:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.function_name = request["function_name"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = request["memory"]
        self.invoked_function_arn = request["arn"]
        self.aws_request_id = request["request_id"]
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + float(request["timeout"])

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends - time.monotonic()) * 1000), 0)


def build_handler(handler_path: str) -> Any:
    """The function's handler as its module builds it from the environment (`module.handler`
    is made by `module.make_handler`, `module.NAME` by `module.make_NAME`), with the local
    SSRF policy (loopback covers allowed only when the stack allows them)."""
    from collage.handlers._runtime import Runtime
    from collage_tools.loopback import local_guard

    module_name, name = handler_path.rsplit(".", 1)
    module = import_module(module_name)
    factory = getattr(module, f"make_{name}")
    base = Runtime.from_environment(module.Environment)
    allow_loopback = os.environ.get("COLLAGE_LOCAL_ALLOW_LOOPBACK") == "1"
    runtime = replace(
        base,
        address_guard=local_guard(allow_loopback, base.address_guard.allowed_host_suffixes),
    )
    # The clients are made in the init phase (Lambda's advice for SDK clients), not in the
    # first invocation's time budget.
    runtime.store.s3  # noqa: B018
    runtime.store.sfn  # noqa: B018
    return factory(runtime)


def main() -> int:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the handler's prints go where its logs go
    requests = sys.stdin.buffer
    handler = build_handler(os.environ["COLLAGE_LOCAL_HANDLER"])
    write_message(answers, {"ready": os.getpid()})
    while True:
        request = read_message(requests)
        if request is None:
            return 0
        try:
            result = handler(request["event"], Context(request))
            answer = {"payload": result}
        except Exception as error:  # shaped as Lambda shapes an unhandled error
            answer = {
                "error": {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_tb(error.__traceback__),
                }
            }
        sys.stdout.flush()
        sys.stderr.write(f"{END_OF_LOGS} {request['request_id']}\n")  # the logs are complete
        sys.stderr.flush()
        write_message(answers, answer)


if __name__ == "__main__":
    sys.exit(main())
