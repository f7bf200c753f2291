"""S3 faults in front of moto, and short retry waits, for the workflow's fault tests.

`S3Faults` answers chosen S3 calls with an error (503 SlowDown, 500 InternalError, ...) before
moto sees them. It wraps moto's botocore stubber rather than adding a `before-send` handler:
botocore calls every `before-send` handler, so moto would still perform a faulted PutObject and
the object would exist although the caller saw a 503. Here a faulted call changes nothing.

The faults reach the S3 clients of this process: the handlers' own only when the stack runs
them in its threads (`lambda_isolation="inline"`, the `inline_stack` fixture); a Lambda worker
process calls moto's server over HTTP, which these faults do not see.

`fast_waits` scales down the waits that make fault runs slow without changing what is retried:
botocore's backoff and adaptive rate limiter, and the state machine's Retry intervals in moto.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULT</RequestId></Error>"
)
MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
}


@dataclass
class S3Fault:
    operation: str  # botocore operation name: "PutObject", "GetObject", ...
    key_contains: str = ""  # only calls whose bucket/key contains this text
    status: int = 503
    code: str = "SlowDown"
    times: int | None = None  # the first N matching calls; None = every matching call
    injected: int = 0

    def matches(self, operation: str, path: str) -> bool:
        if operation != self.operation or self.key_contains not in path:
            return False
        return self.times is None or self.injected < self.times


class S3Faults:
    """Error responses for chosen S3 calls; use as a context manager inside a moto mock."""

    def __init__(self) -> None:
        self.faults: list[S3Fault] = []
        self.calls: Counter[str] = Counter()  # every S3 call seen, by operation
        self.injected: list[tuple[str, str]] = []  # (operation, bucket/key) of each faulted call
        self._lock = threading.Lock()
        self._saved: Any = None

    def add(
        self,
        operation: str,
        key_contains: str = "",
        *,
        status: int = 503,
        code: str = "SlowDown",
        times: int | None = None,
    ) -> S3Fault:
        fault = S3Fault(operation, key_contains, status, code, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, operation: str, key_contains: str = "") -> int:
        """Faulted calls of `operation` whose bucket/key contained `key_contains`."""
        return sum(1 for op, path in self.injected if op == operation and key_contains in path)

    def __enter__(self) -> S3Faults:
        from moto.core.botocore_stubber import BotocoreStubber

        self._saved = BotocoreStubber.__call__
        real_call, faults = self._saved, self

        def call(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            if stubber.enabled and event_name.startswith("before-send.s3."):
                response = faults._answer(event_name.rsplit(".", 1)[-1], request)
                if response is not None:
                    return response
            return real_call(stubber, event_name, request, **kwargs)

        BotocoreStubber.__call__ = call
        return self

    def __exit__(self, *exc: object) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        BotocoreStubber.__call__ = self._saved

    def _answer(self, operation: str, request: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        path = _bucket_and_key(request.url)
        with self._lock:
            self.calls[operation] += 1
            fault = next((f for f in self.faults if f.matches(operation, path)), None)
            if fault is None:
                return None
            fault.injected += 1
            self.injected.append((operation, path))
        body = ERROR_BODY.format(code=fault.code, message=MESSAGES.get(fault.code, fault.code))
        headers = {"Content-Type": "application/xml", "x-amz-request-id": "FAULT"}
        return AWSResponse(request.url, fault.status, headers, MockRawResponse(body))


def _bucket_and_key(url: str) -> str:
    """`bucket/key` of a virtual-hosted or path-style S3 URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = unquote(parts.path).lstrip("/")
    if host.endswith(".amazonaws.com") and not host.startswith("s3."):
        return f"{host.split('.s3', 1)[0]}/{path}"
    return path


@dataclass
class Waits:
    """Waits that were asked for (seconds, before scaling)."""

    botocore_backoff: list[float]
    state_machine_retry: list[float]
    rate_limited: int = 0  # requests that went through botocore's enabled adaptive limiter


@contextmanager
def fast_waits(monkeypatch: pytest.MonkeyPatch, scale: float = 0.01) -> Iterator[Waits]:
    """Scale retry waits by `scale`, recording what was asked for; retry decisions unchanged.

    Botocore's adaptive mode would otherwise sleep up to 20 s per retry and throttle every
    later request of the client after a SlowDown; the state machine's Retry waits 2, 4, 8 s.
    """
    import time

    from botocore.retries import bucket, standard
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    waits = Waits([], [])
    real_delay = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: Any, context: Any) -> float:
        seconds = real_delay(self, context)
        waits.botocore_backoff.append(seconds)
        return seconds * scale

    def acquire(self: Any, amount: int = 1, block: bool = True) -> bool:
        waits.rate_limited += 1  # only called once a throttle has switched the limiter on
        return True

    class _ScaledTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            waits.state_machine_retry.append(seconds)
            time.sleep(seconds * scale)

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    monkeypatch.setattr(bucket.TokenBucket, "acquire", acquire)
    monkeypatch.setattr(retrier_decl, "time", _ScaledTime())
    yield waits


@contextmanager
def moto_stack_buckets(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Plain moto S3 with the stack's three buckets and the handlers' environment.

    For handler-level tests that need no state machine. Yields {"input", "output", "temp"}.
    """
    from moto import mock_aws

    from collage.aws import Store

    names = {"input": "hs-input", "output": "hs-output", "temp": "hs-temp"}
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with mock_aws():
        stack = MotoBuckets(names, Store())
        for name in names.values():
            stack.store.s3.create_bucket(Bucket=name)
        yield stack


class MotoBuckets(dict):
    """The bucket names by role ({"input", "output", "temp"}), the Store that reaches them, and
    the Runtime a handler is wired with for them (covers may come from loopback servers)."""

    def __init__(self, names: dict[str, str], store: Any) -> None:
        super().__init__(names)
        self.store = store

    def runtime(self, **overrides: Any) -> Any:
        from collage.handlers._runtime import Runtime
        from collage_tools.loopback import local_guard

        values = {
            "store": self.store,
            "input_bucket": self["input"],
            "output_bucket": self["output"],
            "temp_bucket": self["temp"],
            "address_guard": local_guard(allow_loopback=True),
            **overrides,
        }
        return Runtime(**values)
