"""The local Lambda runtime: each function's invocations run as Lambda runs them.

One runtime serves `collage run`, `collage serve` and the tests (the emulator's dispatcher
calls `invoke`). For each function of template.yaml:

- **Execution environments are processes** (`collage_tools.lambda_worker`), started with the
  function's environment, its handler built once (the cold start) and reused while warm: an
  environment answers one invocation at a time, and one idle for `idle_seconds` is stopped,
  as Lambda reclaims idle environments.
- **Concurrency**: at most `concurrency` invocations of a function run at once (default 10,
  the render function's default the CPU count); further calls wait for a free environment.
  AWS would answer them `TooManyRequestsException` (429) once the account or reserved
  concurrency is used up; locally the cores are the limit, and waiting keeps a run's retry
  budget for real failures.
- **Timeout**: an invocation still running at the function's `Timeout` is killed (SIGKILL)
  and answered as AWS answers it: `errorType` `Sandbox.Timedout`, `errorMessage`
  `RequestId: ... Error: Task timed out after N.NN seconds`.
- **Memory**: an environment whose peak resident memory passes the function's `MemorySize`
  is killed and answered `Runtime.OutOfMemory` (`RequestId: ... Error: Runtime exited with
  error: signal: killed`). Lambda's limit is a cgroup's, on resident memory, so it is
  measured the same way: the kernel's high-water mark of the process (VmHWM, reset before
  each invocation through /proc/PID/clear_refs), polled every `poll_seconds` and read once
  more when the answer arrives, so a spike between two polls still counts. An address-space
  limit (RLIMIT_AS) would not be faithful: a Python process with Pillow's and botocore's
  threads reserves several times its resident memory (glibc keeps a 64 MB arena per thread).
- **Crashes**: an environment that exits mid-invocation is answered `Runtime.ExitError`.

Answers come back as the Lambda API gives them: a payload, or an error document
`{"errorMessage", "errorType", "stackTrace"}` with the `x-amz-function-error` header set, so
the state machine's Retry and Catch, and the map's failure count, see what AWS would show.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collage_tools.lambda_environment import Worker, WorkerGone, peak_resident

DEFAULT_CONCURRENCY = 10


@dataclass
class FunctionSpec:
    """What Lambda knows of a function: its handler, limits and environment."""

    name: str
    handler: str
    timeout: float  # seconds
    memory: int  # MB
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY
    arn: str = ""

    @property
    def memory_bytes(self) -> int:
        return self.memory * 1024 * 1024


@dataclass
class Answer:
    """An invocation's result as the Lambda API returns it."""

    payload: Any
    function_error: str | None = None  # "Unhandled" when payload is an error document

    @property
    def failed(self) -> bool:
        return self.function_error is not None


def error_answer(error_type: str, message: str, trace: list[str] | None = None) -> Answer:
    document = {"errorMessage": message, "errorType": error_type, "stackTrace": trace or []}
    return Answer(document, "Unhandled")


def lost_answer(spec: FunctionSpec, request_id: str, killed_for: str | None, reason: str) -> Answer:
    """The error Lambda answers for an environment that ended before it answered: killed at
    the timeout, killed over its memory, or exited (`reason`: how) on its own."""
    if killed_for == "timeout":
        return error_answer(
            "Sandbox.Timedout",
            f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds",
        )
    if killed_for == "memory":
        return error_answer(
            "Runtime.OutOfMemory",
            f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
        )
    return error_answer(
        "Runtime.ExitError",
        f"RequestId: {request_id} Error: Runtime exited with error: {reason}",
    )


class _Function:
    """A function's environments: the idle ones (warm) and the limit on those in use."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.slots = threading.BoundedSemaphore(max(1, spec.concurrency))
        self.idle: list[Worker] = []
        self.lock = threading.Lock()
        self.cold_starts = 0

    def take_idle(self) -> list[Worker]:
        """Remove and return every warm environment (to stop or kill them)."""
        with self.lock:
            idle, self.idle = self.idle, []
        return idle

    def warm(self) -> Worker | None:
        """A live warm environment, if there is one; dead ones are dropped."""
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.alive():
                    return worker
        return None

    def park(self, worker: Worker) -> None:
        """Keep an environment that answered warm, for the next invocation."""
        worker.idle_since = time.monotonic()
        with self.lock:
            self.idle.append(worker)

    def take_stale(self, now: float, idle_seconds: float) -> list[Worker]:
        """Remove and return the environments idle for more than `idle_seconds`."""
        with self.lock:
            stale = [w for w in self.idle if now - w.idle_since > idle_seconds]
            self.idle = [w for w in self.idle if w not in stale]
        return stale


class LambdaRuntime:
    """Runs the functions' invocations in worker processes (see the module docstring)."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        *,
        base_env: dict[str, str] | None = None,
        quiet: bool = True,
        poll_seconds: float = 0.05,
        idle_seconds: float = 30.0,
    ) -> None:
        self.functions = {name: _Function(spec) for name, spec in functions.items()}
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.quiet = quiet
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self._busy: set[Worker] = set()
        self._busy_lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="lambda-monitor", daemon=True)
        self.started = False
        self.on_answer: Callable[[str, Answer], None] | None = None

    def start(self) -> LambdaRuntime:
        self._monitor.start()
        self.started = True
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.started:
            self._monitor.join(timeout=5)
        busy = self._busy_workers()
        for worker in busy:
            worker.kill("stopped")
        for function in self.functions.values():
            for worker in function.take_idle():
                worker.stop()
        for worker in busy:
            with contextlib.suppress(Exception):
                worker.process.wait(timeout=5)

    def kill(self) -> None:
        """End every worker at once, busy or idle: the process ends next (collage serve's
        Ctrl-C), so nothing is owed a graceful stop. stop() takes seconds a worker."""
        self._stopping.set()
        workers = self._busy_workers()
        for function in self.functions.values():
            workers += function.take_idle()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.process.kill()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.process.wait(timeout=2)

    def spec(self, name: str) -> FunctionSpec:
        return self.functions[name].spec

    def configure(
        self,
        name: str,
        *,
        timeout: float | None = None,
        memory: int | None = None,
        concurrency: int | None = None,
        handler: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Change a function's configuration, as UpdateFunctionConfiguration does: warm
        environments are dropped, so new invocations start fresh ones."""
        function = self.functions[name]
        spec = function.spec
        if timeout is not None:
            spec.timeout = timeout
        if memory is not None:
            spec.memory = memory
        if handler is not None:
            spec.handler = handler
        if env is not None:
            spec.env = {**spec.env, **env}
        if concurrency is not None:
            spec.concurrency = concurrency
            function.slots = threading.BoundedSemaphore(max(1, concurrency))
        for worker in function.take_idle():
            worker.stop()

    # ------------------------------------------------------------------ invoking
    def invoke(self, name: str, event: Any) -> Answer:
        function = self.functions[name]
        request_id = str(uuid.uuid4())
        with function.slots:
            try:
                worker = self._take(function)
            except WorkerGone as gone:
                return error_answer(
                    "Runtime.ExitError",
                    f"RequestId: {request_id} Error: Runtime exited "
                    f"with error: {gone} (while starting the handler {function.spec.handler})",
                )
            result = self._run(function, worker, _request(function.spec, request_id, event))
        if self.on_answer is not None:
            self.on_answer(name, result)
        return result

    def _run(self, function: _Function, worker: Worker, request: dict[str, Any]) -> Answer:
        """One invocation in `worker`, answered as Lambda answers it."""
        spec = function.spec
        self._mark_busy(worker)
        try:
            answer = worker.invoke(request, spec.timeout)
            reason = ""
        except WorkerGone as gone:
            answer, reason = None, str(gone)
        finally:
            self._mark_idle(worker)
        peak = peak_resident(worker.pid) if worker.alive() else 0
        worker.peak_bytes = max(worker.peak_bytes, peak)
        if answer is not None and peak > spec.memory_bytes:
            worker.kill("memory")  # the cgroup would have killed it before it answered
            answer = None
        if answer is None:
            with contextlib.suppress(Exception):
                worker.stop()
            return lost_answer(spec, request["request_id"], worker.killed_for, reason)
        function.park(worker)
        if "error" in answer:
            return Answer(answer["error"], "Unhandled")
        return Answer(answer.get("payload"))

    def _take(self, function: _Function) -> Worker:
        """A warm environment of the function, or a new one (a cold start)."""
        worker = function.warm()
        if worker is not None:
            return worker
        spec = function.spec
        env = {**self.base_env, **spec.env, "COLLAGE_LOCAL_HANDLER": spec.handler}
        worker = Worker(spec, env, verbose=not self.quiet)
        function.cold_starts += 1
        self._mark_busy(worker)  # the init phase counts against the timeout and memory too
        try:
            worker.start(timeout=max(spec.timeout, 10.0))
        except WorkerGone:
            with contextlib.suppress(Exception):
                worker.stop()
            raise
        finally:
            self._mark_idle(worker)
        return worker

    def _mark_busy(self, worker: Worker) -> None:
        with self._busy_lock:
            self._busy.add(worker)

    def _mark_idle(self, worker: Worker) -> None:
        with self._busy_lock:
            self._busy.discard(worker)

    def _busy_workers(self) -> list[Worker]:
        with self._busy_lock:
            return list(self._busy)

    # ------------------------------------------------------------------ watching
    def _watch(self) -> None:
        """The monitor: kill what runs past its deadline or memory, stop what idles too long."""
        while not self._stopping.wait(self.poll_seconds):
            now = time.monotonic()
            for worker in self._busy_workers():
                _enforce_limits(worker, now)
            for function in self.functions.values():
                for worker in function.take_stale(now, self.idle_seconds):
                    worker.stop()

    def environments(self) -> dict[str, int]:
        """Warm environments per function (for tests and the benchmark)."""
        return {name: len(function.idle) for name, function in self.functions.items()}


def _request(spec: FunctionSpec, request_id: str, event: Any) -> dict[str, Any]:
    """What a worker is handed for one invocation: the event and its context's values."""
    return {
        "event": event,
        "request_id": request_id,
        "function_name": spec.name,
        "arn": spec.arn,
        "memory": spec.memory,
        "timeout": spec.timeout,
    }


def _enforce_limits(worker: Worker, now: float) -> None:
    deadline = worker.deadline
    if deadline is not None and now > deadline:
        worker.kill("timeout")
    elif peak_resident(worker.pid) > worker.spec.memory_bytes:
        worker.kill("memory")
