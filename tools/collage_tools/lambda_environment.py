"""One execution environment of the local Lambda runtime, seen from the runtime's side.

A `Worker` is the process (`collage_tools.lambda_worker`) that runs one function's handler:
started with the function's environment, waited for through its cold start, handed one
invocation at a time over its pipes, and stopped when idle or killed when over its limits.
Its log lines are forwarded by `lambda_logs`; its memory is read from /proc (`peak_resident`)
as a cgroup counts it: resident memory, the kernel's high-water mark since the last reset.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from collage_tools.lambda_logs import forward_logs
from collage_tools.lambda_worker import read_message, write_message

if TYPE_CHECKING:
    from collage_tools.lambda_runtime import FunctionSpec


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
