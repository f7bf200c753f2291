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
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collage_tools.lambda_worker import END_OF_LOGS, read_message, write_message

DEFAULT_CONCURRENCY = 10
PAGE = os.sysconf("SC_PAGE_SIZE")


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


class WorkerGone(RuntimeError):
    """The environment ended (killed or crashed) before it answered."""


class Worker:
    """One execution environment: a process running one function's handler."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], verbose: bool) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collage_tools.lambda_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the command, which stops its workers
        )
        self.logged = threading.Event()  # the invocation's log lines have all been forwarded
        self._logs = threading.Thread(
            target=forward_logs,
            args=(self.process.stderr, spec.name, verbose, self.logged),
            name=f"logs-{self.process.pid}",
            daemon=True,
        )
        self._logs.start()
        self.killed_for: str | None = None  # "timeout" or "memory"
        self.deadline: float | None = None  # while an invocation runs
        self.idle_since = time.monotonic()
        self.invocations = 0
        self.peak_bytes = 0  # the largest VmHWM seen during this environment's invocations
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float) -> None:
        """Wait for the cold start (the handler built) to finish."""
        self.deadline = time.monotonic() + timeout
        try:
            ready = read_message(self.process.stdout)  # type: ignore[arg-type]
        finally:
            self.deadline = None
        if not ready or "ready" not in ready:
            raise WorkerGone(self._exit_reason())

    def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        reset_peak(self.pid)
        self.logged.clear()
        self.deadline = time.monotonic() + timeout
        try:
            write_message(self.process.stdin, request)  # type: ignore[arg-type]
            answer = read_message(self.process.stdout)  # type: ignore[arg-type]
        except (BrokenPipeError, ValueError, OSError):
            answer = None
        finally:
            self.deadline = None
        self.invocations += 1
        if answer is None:
            raise WorkerGone(self._exit_reason())
        self.logged.wait(timeout=2)  # its log lines reach the log before its answer returns
        return dict(answer)

    def kill(self, reason: str) -> None:
        with self._lock:
            if self.killed_for is None:
                self.killed_for = reason
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def stop(self) -> None:
        """End an idle environment: close its input, then kill what does not leave."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            self.process.stdout.close()  # type: ignore[union-attr]
        self._logs.join(timeout=2)

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code < 0:
            return f"signal: {signal.Signals(-code).name.removeprefix('SIG').lower()}"
        return f"exit status {code}"

    def alive(self) -> bool:
        return self.process.poll() is None


_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
LOG = logging.getLogger("collage.lambda")


def forward_logs(stream: Any, function: str, verbose: bool, logged: threading.Event) -> None:
    """What CloudWatch Logs is to Lambda: each line a worker writes on stderr. The handlers'
    JSON log lines become records of the `collage.lambda` logger (with their keys, such as
    `reason`, as attributes), metric lines are dropped; with `verbose` every other line is
    also shown on stderr as written."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line.startswith(END_OF_LOGS):
            logged.set()
            continue
        try:
            document = json.loads(line)
        except ValueError:
            document = None
        if not isinstance(document, dict) or "level" not in document:
            if verbose and (document is None or "_aws" not in document):
                sys.stderr.write(line + "\n")
            continue
        if verbose:  # --verbose shows every handler's log line as the function wrote it
            sys.stderr.write(line + "\n")
        level = logging.getLevelName(str(document.get("level", "INFO")).upper())
        extra = {k: v for k, v in document.items() if k not in _RECORD_FIELDS}
        extra["function"] = function
        record = LOG.makeRecord(
            LOG.name,
            level if isinstance(level, int) else logging.INFO,
            str(document.get("location", function)),
            0,
            str(document.get("message", "")),
            (),
            None,
            extra=extra,
        )
        LOG.handle(record)
    stream.close()


def reset_peak(pid: int) -> None:
    """Reset the process's peak resident memory (VmHWM) to its current size (Linux 4.0+)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def peak_resident(pid: int) -> int:
    """The process's peak resident memory in bytes (VmHWM), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Function:
    """A function's environments: the idle ones (warm) and the limit on those in use."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.slots = threading.BoundedSemaphore(max(1, spec.concurrency))
        self.idle: list[Worker] = []
        self.lock = threading.Lock()
        self.cold_starts = 0


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
        with self._busy_lock:
            busy = list(self._busy)
        for worker in busy:
            worker.kill("stopped")
        for function in self.functions.values():
            with function.lock:
                idle, function.idle = function.idle, []
            for worker in idle:
                worker.stop()
        for worker in busy:
            with contextlib.suppress(Exception):
                worker.process.wait(timeout=5)

    def kill(self) -> None:
        """End every worker at once, busy or idle: the process ends next (collage serve's
        Ctrl-C), so nothing is owed a graceful stop. stop() takes seconds a worker."""
        self._stopping.set()
        with self._busy_lock:
            workers = list(self._busy)
        for function in self.functions.values():
            with function.lock:
                workers += function.idle
                function.idle = []
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
        with function.lock:
            idle, function.idle = function.idle, []
        for worker in idle:
            worker.stop()

    # ------------------------------------------------------------------ invoking
    def invoke(self, name: str, event: Any) -> Answer:
        function = self.functions[name]
        spec = function.spec
        request_id = str(uuid.uuid4())
        slots = function.slots
        with slots:
            try:
                worker = self._take(function)
            except WorkerGone as gone:
                return error_answer(
                    "Runtime.ExitError",
                    f"RequestId: {request_id} Error: Runtime exited "
                    f"with error: {gone} (while starting the handler {spec.handler})",
                )
            request = {
                "event": event,
                "request_id": request_id,
                "function_name": spec.name,
                "arn": spec.arn,
                "memory": spec.memory,
                "timeout": spec.timeout,
            }
            with self._busy_lock:
                self._busy.add(worker)
            try:
                answer = worker.invoke(request, spec.timeout)
            except WorkerGone as gone:
                answer = None
                reason = str(gone)
            finally:
                with self._busy_lock:
                    self._busy.discard(worker)
            result = self._settle(
                function, worker, answer, request_id, reason if answer is None else ""
            )
        if self.on_answer is not None:
            self.on_answer(name, result)
        return result

    def _settle(
        self,
        function: _Function,
        worker: Worker,
        answer: dict[str, Any] | None,
        request_id: str,
        exit_reason: str,
    ) -> Answer:
        spec = function.spec
        limit = spec.memory * 1024 * 1024
        peak = peak_resident(worker.pid) if worker.alive() else 0
        worker.peak_bytes = max(worker.peak_bytes, peak)
        if answer is not None and peak > limit:
            worker.kill("memory")  # the cgroup would have killed it before it answered
            answer = None
        if answer is not None:
            worker.idle_since = time.monotonic()
            with function.lock:
                function.idle.append(worker)
            if "error" in answer:
                return Answer(answer["error"], "Unhandled")
            return Answer(answer.get("payload"))
        with contextlib.suppress(Exception):
            worker.stop()
        if worker.killed_for == "timeout":
            return error_answer(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds",
            )
        if worker.killed_for == "memory":
            return error_answer(
                "Runtime.OutOfMemory",
                f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
            )
        return error_answer(
            "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {exit_reason}",
        )

    def _take(self, function: _Function) -> Worker:
        """A warm environment of the function, or a new one (a cold start)."""
        with function.lock:
            while function.idle:
                worker = function.idle.pop()
                if worker.alive():
                    return worker
        spec = function.spec
        env = {**self.base_env, **spec.env, "COLLAGE_LOCAL_HANDLER": spec.handler}
        worker = Worker(spec, env, verbose=not self.quiet)
        function.cold_starts += 1
        with self._busy_lock:
            self._busy.add(worker)  # the init phase counts against the timeout and memory too
        try:
            worker.start(timeout=max(spec.timeout, 10.0))
        except WorkerGone:
            with contextlib.suppress(Exception):
                worker.stop()
            raise
        finally:
            with self._busy_lock:
                self._busy.discard(worker)
        return worker

    # ------------------------------------------------------------------ watching
    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            now = time.monotonic()
            with self._busy_lock:
                busy = list(self._busy)
            for worker in busy:
                deadline = worker.deadline
                if deadline is not None and now > deadline:
                    worker.kill("timeout")
                elif peak_resident(worker.pid) > worker.spec.memory * 1024 * 1024:
                    worker.kill("memory")
            self._reap_idle(now)

    def _reap_idle(self, now: float) -> None:
        for function in self.functions.values():
            with function.lock:
                stale = [w for w in function.idle if now - w.idle_since > self.idle_seconds]
                function.idle = [w for w in function.idle if w not in stale]
            for worker in stale:
                worker.stop()

    def environments(self) -> dict[str, int]:
        """Warm environments per function (for tests and the benchmark)."""
        return {name: len(function.idle) for name, function in self.functions.items()}
