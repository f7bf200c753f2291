"""`collage submit`: start a run on a stack the way users do, follow it, print its summary.

A CSV is uploaded under csv-files/ of the stack's input bucket (found from the stack's outputs)
and the execution its upload event started is found; a message is checked with the starter's
rules, sent to the processing queue, and its execution followed by name. Progress goes to
stderr, the run summary (the execution's output) to stdout as JSON. Exit status: 0 when the run
succeeded, 1 when it failed or could not be found (the reason on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TextIO

DEPLOYED_POLL = 2.0  # seconds between polls of a deployed stack (DescribeExecution is metered)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("csv", nargs="?", type=Path, help="CSV file to upload under csv-files/")
    source.add_argument(
        "--message", type=Path, metavar="MESSAGE.json", help="an SQS message body to send"
    )
    parser.add_argument("--key", help="the object key (default csv-files/<file name>)")
    add_stack_arguments(parser)


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """What submit and watch share: where the stack is, how to follow the run, what to fetch."""
    parser.add_argument("--stack", default="collage-local", help="the stack's name (sam deploy's)")
    parser.add_argument(
        "--endpoint-url",
        help="a local endpoint: `collage serve`'s, or LocalStack's (http://localhost:4566)",
    )
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration)")
    parser.add_argument("--download", type=Path, metavar="DIR", help="fetch report and collages")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    parser.add_argument("--poll", type=float, help="seconds between polls (default 2, local 0.25)")
    add_open_argument(parser)


def add_open_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--open",
        action="store_true",
        help="open the run's contact sheet in your browser (needs the run on disk: --download)",
    )


def say(text: str) -> None:
    print(f"collage: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from collage_tools.stack_client import CollageStack, StackError

    source = args.csv or args.message
    if not source.is_file():
        say(f"no such file: {source}")
        return 2
    try:
        stack = CollageStack.find(args.stack, endpoint_url=args.endpoint_url, region=args.region)
        execution = start(stack, args)
    except StackError as error:
        say(str(error))
        return 1
    return follow_to_summary(stack, execution, args)


def start(stack: Any, args: argparse.Namespace) -> str:
    """Start the run; return its execution's ARN."""
    from collage_tools import stack_client

    poll, find_within = poll_interval(args), min(args.timeout, 300.0)
    if args.message:
        name = stack_client.send_message(stack, args.message.read_text(encoding="utf-8"))
        say(f"message sent; waiting for execution {name}")
        return stack_client.wait_for_start(stack, name, find_within, poll)
    key = args.key or f"csv-files/{args.csv.name}"
    key, stored = stack_client.upload_csv(stack, args.csv, key)
    say(f"uploaded s3://{stack.outputs['InputBucketName']}/{key}; finding its execution")
    return stack_client.find_upload_run(stack, key, stored, find_within, poll)


def poll_interval(args: argparse.Namespace) -> float:
    return float(args.poll or (0.25 if args.endpoint_url else DEPLOYED_POLL))


def follow_to_summary(
    stack: Any,
    execution: str,
    args: argparse.Namespace,
    out: TextIO | None = None,
    earlier: int = 0,
    output_dir: Path | None = None,
) -> int:
    """Follow the execution with a progress line, print the summary (on `out`, default
    stdout), fetch what was asked. `output_dir`: where the output bucket already is on disk
    (`collage run --out`), so nothing is downloaded; its count and the sheet's path are said."""
    from collage_tools import stack_client
    from collage_tools.progress import ProgressLine

    say(f"execution {execution.rsplit(':', 1)[-1]} ({execution})")
    progress = ProgressLine(sys.stderr)

    def show(snapshot: Any) -> None:
        progress.show(dataclasses.replace(snapshot, earlier=earlier))

    try:
        described = stack_client.follow(
            stack, execution, show, poll=poll_interval(args), timeout=args.timeout
        )
    except stack_client.StackError as error:
        progress.close(str(error))
        return 1
    summary = stack_client.run_summary(stack, described)
    progress.close(f"collage: {described['status']}")
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str), file=out or sys.stdout)
    say_written(stack, summary, args.download, output_dir)
    problem = stack_client.outcome(described, summary)
    if problem:
        say(problem)
    show_sheet(summary, args.download or output_dir, args.open)
    return 1 if problem else 0


def say_written(
    stack: Any, summary: dict[str, Any], download: Path | None, output_dir: Path | None
) -> None:
    """Fetch the run into `download` if asked; say how many objects are on disk, and where."""
    from collage_tools import stack_client

    if download:
        written = stack_client.download_run(stack, summary, download)
        say(f"{len(written)} objects written under {download}")
    elif output_dir is not None:
        written = [p for p in output_dir.rglob("*") if p.is_file() and not _hidden(p, output_dir)]
        say(f"{len(written)} objects written under {output_dir}")


def _hidden(path: Path, folder: Path) -> bool:
    """Under a dot-folder of `folder` (collage run's working files are in .collage/)."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])


def show_sheet(summary: dict[str, Any], directory: Path | None, open_it: bool) -> None:
    """Say where the run's contact sheet is, last: on disk when downloaded, else its S3 key;
    with `open_it`, open it in the user's browser (a file on disk only)."""
    sheet = str(summary.get("sheet") or "")
    if not sheet:
        return  # a run that failed before its report was written
    if directory is None:
        say(f"contact sheet: {sheet}")
        if open_it:
            say("--open needs the run on disk: add --download DIR")
        return
    path = directory / sheet.split("/", 3)[3]  # s3://bucket/KEY, written at its key
    say(f"contact sheet: {path}")
    if open_it:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            say("no browser could be started here: open the path above yourself")
