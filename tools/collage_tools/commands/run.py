"""`collage run`: the whole workflow on the embedded local AWS, for a CSV file or an SQS message.

Prints the execution's output (the run summary) as JSON on stdout, progress on stderr, writes
every object of the output bucket under --out at its S3 key, and exits 0 only if the run succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "csv", nargs="?", type=Path, help="CSV file (creator_name,cover_url,updated_at)"
    )
    source.add_argument(
        "--message",
        type=Path,
        metavar="MESSAGE.json",
        help="an SQS message body (processing_type csv_data)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for the output bucket's objects"
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="allow cover URLs on 127.0.0.1/localhost (local runs only, never deployed)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    parser.add_argument("--verbose", action="store_true", help="show the handlers' INFO logs")


def _say(text: str) -> None:
    print(f"collage run: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    source = args.csv or args.message
    if not source.is_file():
        _say(f"no such file: {source}")
        return 2
    from collage_tools.emulator import LocalStack

    _say("starting the embedded local AWS (moto)")
    with contextlib.ExitStack() as scope:
        # Handlers print metrics (CloudWatch EMF lines) on stdout, which is kept for the
        # summary: they go to stderr with --verbose and are dropped otherwise.
        quiet = open(os.devnull, "w")  # noqa: SIM115 - closed by the exit stack
        sink = sys.stderr if args.verbose else scope.enter_context(quiet)
        scope.enter_context(contextlib.redirect_stdout(sink))
        stack = scope.enter_context(
            LocalStack(allow_loopback=args.allow_loopback, verbose=args.verbose)
        )
        if args.csv:
            started = stack.upload_csv(source.read_bytes(), f"csv-files/{source.name}")
            name = started.get("name")
            if not name or started.get("ignored"):
                _say(f"the upload started no run: {started}")
                return 1
        else:
            stack.send_message(source.read_text(encoding="utf-8"))
            delivered = stack.deliver_messages()
            if not delivered or not delivered[0]["started"]:
                _say(
                    "the message was refused (see the log above); it stays on the queue for the DLQ"
                )
                return 1
            name = _execution_for_message(stack)
        _say(f"execution {name}")
        described = stack.wait(name, timeout=args.timeout, progress=_say)
        written = stack.download_bucket("OutputBucket", args.out)
        summary = _summary(stack, described)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    _say(f"{described['status']}: {len(written)} objects written under {args.out}")
    if described["status"] != "SUCCEEDED":
        return 1
    if summary.get("collages") == 0 and summary.get("creators", {}).get("total"):
        _say("no collage could be rendered: every cover failed (see the report)")
        return 1
    return 0


def _summary(stack, described: dict) -> dict:
    """The execution's output; for a failed run, the output of its last report-writing step."""
    if described.get("output"):
        return json.loads(described["output"])
    history = stack.store.sfn.get_execution_history(
        executionArn=described["executionArn"], reverseOrder=True
    )["events"]
    for event in history:
        details = event.get("stateExitedEventDetails") or {}
        if details.get("name") in ("Aggregate", "RecordFailedRun") and details.get("output"):
            return json.loads(details["output"])
    return {"status": "failed", "error": described.get("error"), "cause": described.get("cause")}


def _execution_for_message(stack) -> str:
    executions = stack.store.sfn.list_executions(
        stateMachineArn=stack.names["CollageStateMachine"]
    )["executions"]
    return executions[0]["name"]
