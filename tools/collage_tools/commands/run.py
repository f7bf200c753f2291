"""`collage run`: the whole workflow on the embedded local AWS, for a CSV file or an SQS message.

The run starts as on AWS: the CSV is uploaded under csv-files/ (its event starts the run), or
the message is sent to the queue (polled as Lambda's event source mapping polls it), and the
run is followed with the same client as `collage submit`. Prints the run summary as JSON on
stdout, progress on stderr, and exits 0 only if the run succeeded.

--out is the output bucket: each collage is written there at its S3 key the moment its collage
task stores it, and the report at the end. The run's working files (the temp bucket: the map's
items, each creator's result record, the map's results) are kept in `--out/.collage/temp/`.
Neither is held in memory (see collage_tools.bounded), so a month's CSV runs in bounded memory.

Interrupted (Ctrl-C, kill -9, a crash), the same command resumes: `--out/.collage/run.json` keeps
the CSV's (or the message's) digest and the trigger as first delivered (the upload's event; the
message's id and SentTimestamp), and the same input is started by the same trigger again, so it
is the same run (same execution name, timestamp and keys). Its creators
with a result record in `--out/.collage/temp` are skipped by the collage task's own check (as
for a redriven run on AWS): none is rendered twice, and the report is the one an uninterrupted
run writes. A different CSV (another digest) starts a new run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from collage_tools.commands.submit import add_open_argument, follow_to_summary, say, start

WORK_FOLDER = ".collage"  # under --out: the temp bucket, the spool and the run's state
STATE_FILE = "run.json"


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
        "--out", type=Path, required=True, help="directory for the run's report and collages"
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="allow cover URLs on 127.0.0.1/localhost (local runs only, never deployed)",
    )
    parser.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="seconds to wait for the run"
    )
    add_concurrency_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="show the handlers' INFO logs")
    add_open_argument(parser)


def add_concurrency_argument(parser: argparse.ArgumentParser) -> None:
    """--concurrency: the local stack's render concurrency (collage run and collage serve)."""
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="collage tasks run at once (the render function's concurrency; default: CPU count)",
    )


def run(args: argparse.Namespace) -> int:
    source = args.csv or args.message
    if not source.is_file():
        say(f"no such file: {source}")
        return 2
    from collage_tools.emulator import STACK, running_stack
    from collage_tools.stack_client import CollageStack, StackError

    args.key, args.download, args.poll = None, None, 0.25
    summary_out = sys.stdout  # before running_stack takes stdout from the handlers
    out = args.out.resolve()
    work = out / WORK_FOLDER
    state = _resumable(work, source, _run_key(args))
    _clear_leftovers(out, work)
    earlier = 0
    say("starting the embedded local AWS (moto)")
    with running_stack(
        allow_loopback=args.allow_loopback,
        verbose=args.verbose,
        render_concurrency=args.concurrency,
        folders={"OutputBucket": out, "TempBucket": work / "temp"},
        work_dir=work / "spool",
    ) as local:
        stack = CollageStack(STACK, local.outputs(), local.client)
        if state is not None:
            _replay(local, state)
            earlier = _done_before(work, state["execution"])
            say(f"resuming run {state['execution']}: {earlier} creators already done")
        try:
            execution = _start(stack, args, state)
        except StackError as error:
            say(str(error))
            return 1
        _remember(work, source, _run_key(args), local, execution)
        return follow_to_summary(
            stack, execution, args, out=summary_out, earlier=earlier, output_dir=args.out
        )


def _run_key(args: argparse.Namespace) -> str:
    """What the run is started by: its upload's key, or `message` for an SQS message."""
    return f"csv-files/{args.csv.name}" if args.csv else "message"


def _replay(local: Any, state: dict[str, Any]) -> None:
    """Deliver the trigger as it was first delivered: the same run (name, timestamp, keys)."""
    if state["key"] == "message":
        local.message_replay[state["sha256"]] = state["event"]
    else:
        local.triggers.replay[state["key"]] = state["event"]


def _start(stack: Any, args: argparse.Namespace, state: dict[str, Any] | None) -> str:
    """Start the run (again, when resuming a message's: the starter names it as before)."""
    if not (state and args.message):
        return start(stack, args)
    from collage_tools import stack_client

    stack_client.send_message(stack, args.message.read_text(encoding="utf-8"))
    return stack_client.wait_for_start(stack, state["execution"], 300.0, args.poll)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _source_digest(source: Path, key: str) -> str:
    """The CSV file's sha256, or a message's: of its body as sent (the stack keys it so)."""
    if key != "message":
        return _digest(source)
    body = source.read_text(encoding="utf-8").encode("utf-8", "surrogatepass")
    return hashlib.sha256(body).hexdigest()


def _resumable(work: Path, source: Path, key: str) -> dict[str, Any] | None:
    """The interrupted (or finished) run of this very CSV or message in this --out, if any."""
    try:
        state = json.loads((work / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("sha256") != _source_digest(source, key) or state.get("key") != key:
        return None
    return dict(state)


def _remember(work: Path, source: Path, key: str, local: Any, execution: str) -> None:
    """What a rerun needs to resume this run: the trigger's event as first delivered."""
    digest = _source_digest(source, key)
    first = local.delivered.get(digest) if key == "message" else local.triggers.events.get(key)
    if first is None:
        return
    state = {"sha256": digest, "key": key, "execution": execution.rsplit(":", 1)[-1]}
    work.mkdir(parents=True, exist_ok=True)
    part = work / f".{STATE_FILE}.part"
    part.write_text(json.dumps({**state, "event": first}, indent=2))
    os.replace(part, work / STATE_FILE)


def _done_before(work: Path, execution: str) -> int:
    """Creators whose result record says they are done (the collage task skips them)."""
    from types import SimpleNamespace

    from pydantic import ValidationError

    from collage.contracts import CreatorResult
    from collage.layout import RunLayout, temp_prefix

    keys = RunLayout(SimpleNamespace(temp_prefix=temp_prefix(execution)))
    results = work / "temp" / keys.results
    done = 0
    for record in results.glob("*.json") if results.is_dir() else ():
        try:
            done += CreatorResult.model_validate_json(record.read_bytes()).done
        except (OSError, ValidationError):
            continue
    return done


def _clear_leftovers(out: Path, work: Path) -> None:
    """What an interrupted run leaves half-done: objects being written, spooled items."""
    if not out.is_dir():
        return
    for part in out.rglob(".part-*"):
        part.unlink(missing_ok=True)
    for spooled in (work / "spool").glob("items-*"):
        spooled.unlink(missing_ok=True)
