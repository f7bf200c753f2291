"""Handlers run in threads of this process: the local stack's `lambda_isolation="inline"`.

No limits are enforced here (no timeout, no memory); this is for tests whose fault injection
lives in this process's clients (the IAM harness, S3 faults), which a worker process's clients
would not see. The process isolation is lambda_runtime.py's.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import replace
from importlib import import_module
from typing import Any

Handler = Callable[[Any, Any], Any]


def build_handler(
    handler_path: str, env: dict[str, str], store: Any, allow_loopback: bool
) -> Handler:
    """The function's handler, built by its module's make_handler as Lambda would build it
    from the template's variables (`env`), but with the local SSRF policy and `store`."""
    from collage.handlers._runtime import Runtime
    from collage_tools.loopback import local_guard

    module = import_module(handler_path.rsplit(".", 1)[0])
    base = Runtime.from_environment(module.Environment, env)
    suffixes = base.address_guard.allowed_host_suffixes
    runtime = replace(base, store=store, address_guard=local_guard(allow_loopback, suffixes))
    handler: Handler = module.make_handler(runtime)
    return handler


class InlineCalls:
    """The handler calls under way, so that closing can wait for them and refuse new ones."""

    def __init__(self) -> None:
        self._calls = 0
        self._closing = False
        self._idle = threading.Condition()

    def call(
        self, handler: Handler, event: Any, context: Any, response_headers: dict[str, Any] | None
    ) -> Any:
        """The handler's answer; an error it raises is raised, or with `response_headers`
        answered as the Lambda API answers it (the error document, x-amz-function-error)."""
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

    def close(self, grace: float) -> None:
        """No call starts from now on; wait up to `grace` seconds for those under way."""
        with self._idle:
            self._closing = True
            self._idle.wait_for(lambda: self._calls == 0, timeout=grace)
