"""Handlers for the local Lambda runtime's tests, built as the project's are (make_handler).

`behaving` does what its event asks: answer, sleep, hold memory, raise, or exit the process.
`slow_render` is the real collage task, except that a creator named in SLOW_CREATORS sleeps
past any timeout first (a handler made to overrun its Lambda timeout), and one named in
FAILING_CREATORS crashes (an error no Retry names: the map child fails at once).
"""

from __future__ import annotations

import os
import time
from typing import Any

from collage.handlers._runtime import FunctionEnvironment

SLOW_CREATORS = "COLLAGE_TEST_SLOW_CREATORS"
FAILING_CREATORS = "COLLAGE_TEST_FAILING_CREATORS"


class Environment(FunctionEnvironment):
    """What the worker wires these handlers with: `behaving` reads nothing, `slow_render` the
    render function's buckets (blank where a test's function has none)."""

    OUTPUT_BUCKET: str = ""
    TEMP_BUCKET: str = ""


def make_handler(runtime: Any) -> Any:
    held: list[bytearray] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        action = event.get("do", "answer")
        if action == "sleep":
            time.sleep(float(event["seconds"]))
        elif action == "hold":  # touch every page, so it is resident
            held.append(bytearray(os.urandom(1)) * (int(event["mb"]) * 1024 * 1024))
        elif action == "spike":  # allocate and free before answering
            block = bytearray(int(event["mb"]) * 1024 * 1024)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            del block
        elif action == "raise":
            raise ValueError(event.get("message", "asked to fail"))
        elif action == "exit":
            os._exit(int(event.get("code", 3)))
        return {
            "pid": os.getpid(),
            "remaining_ms": context.get_remaining_time_in_millis(),
            "memory": context.memory_limit_in_mb,
            "echo": event.get("echo"),
        }

    return handler


def make_slow_render(runtime: Any) -> Any:
    from collage.handlers import render

    real = render.make_handler(runtime)
    slow = set(filter(None, os.environ.get(SLOW_CREATORS, "").split(",")))

    failing = set(filter(None, os.environ.get(FAILING_CREATORS, "").split(",")))

    def handler(event: dict[str, Any], context: Any) -> Any:
        creator = event.get("item", {}).get("creator")
        if creator in slow:
            time.sleep(3600)
        if creator in failing:
            raise RuntimeError(f"asked to crash for {creator}")
        return real(event, context)

    return handler
