"""`collage serve`: the whole local stack behind an AWS endpoint on 127.0.0.1, until Ctrl-C.

The embedded stack of `collage run` (buckets, queue, DLQ, state machine, functions, the
upload rule and the queue's event source mapping, all from template.yaml) served by moto's
server, so any AWS client can use it: `aws --endpoint-url`, boto3 with `endpoint_url`, or
`collage submit --endpoint-url`. An upload under csv-files/ or a message on the queue starts a
run exactly as on AWS. State lives in this process only: stopping it forgets everything, so
Ctrl-C stops the runs under way, gives their handler calls STOP_GRACE seconds, and ends the
process without waiting for covers still downloading (while the local AWS still answers, so
no late call of theirs can reach past it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from typing import TextIO

DEFAULT_PORT = 4599  # beside LocalStack's 4566, so both can run
STOP_GRACE = 0.5  # seconds for handler calls under way when serve stops
SIGNAL_POLL = 0.2  # seconds the main thread sleeps between looks at pending signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from collage_tools.commands.run import add_concurrency_argument

    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (0: any free one; default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="allow cover URLs on 127.0.0.1/localhost (local covers only, never deployed)",
    )
    add_concurrency_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="log every request and handler")


def run(args: argparse.Namespace) -> int:
    from collage_tools.emulator import STACK, running_stack

    try:  # moto's server thread would wait forever on a port it cannot bind: check first
        with socket.create_server(("127.0.0.1", args.port)):
            pass
    except OSError as error:
        print(f"collage serve: port {args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    announce = sys.stdout  # before running_stack takes stdout from the handlers
    # The stack's own server (the one its Lambda workers call) is the endpoint clients use.
    with running_stack(
        allow_loopback=args.allow_loopback,
        verbose=args.verbose,
        port=args.port,
        render_concurrency=args.concurrency,
    ) as local:
        _announce(announce, local.endpoint, STACK, local.outputs())
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop
            # In slices: Python runs a signal's handler in the main thread only, and the
            # kernel may deliver SIGINT to any of the stack's threads, which leaves an
            # untimed wait asleep (serve then ignored Ctrl-C with runs under way).
            while not stopping.wait(SIGNAL_POLL):
                pass
        stopped = local.stop_runs(STOP_GRACE)
        runs = f" ({stopped} runs under way stopped)" if stopped else ""
        print(
            f"collage serve: stopped{runs}; the local stack and its objects are gone",
            file=sys.stderr,
        )
        _exit_now(0)
    return 0


def _exit_now(status: int) -> None:
    """End the process without joining the threads of stopped runs (thread pools are joined at
    exit, and one still waiting on a cover would hold the exit for many seconds). Nothing is
    lost: the stack's state lived in this process only, and stop_runs ended its workers."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _announce(out: TextIO, endpoint: str, stack: str, outputs: dict[str, str]) -> None:
    lines = [
        f"endpoint: {endpoint}",
        f"region: us-east-1 (any access key works; stack name {stack})",
        *(f"{key}: {value}" for key, value in outputs.items()),
        "",
        f"  aws --endpoint-url {endpoint} s3 cp covers.csv "
        f"s3://{outputs['InputBucketName']}/csv-files/",
        f"  collage submit covers.csv --endpoint-url {endpoint}",
        "",
        "ready: state lives in this process only; Ctrl-C stops it and forgets everything",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
