"""`collage run`: the whole workflow on the embedded local AWS, for a CSV file or an SQS message.

The run starts as on AWS: the CSV is uploaded under csv-files/ (its event starts the run), or
the message is sent to the queue (polled as Lambda's event source mapping polls it), and the
run is followed with the same client as `collage submit`. Prints the run summary as JSON on
stdout, progress on stderr, and exits 0 only if the run succeeded.

--out is the output bucket: each collage is written there at its S3 key the moment its collage
task stores it, and the report at the end. The run's working files (the temp bucket: the map's
items, each creator's result record, the map's results) are kept in `--out/.collage/temp/`.
Neither is held in memory (see collage_tools.bounded), so a month's CSV runs in bounded memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collage_tools.commands.submit import follow_to_summary, say, start

WORK_FOLDER = ".collage"  # under --out: the temp bucket and the spool


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
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="collage tasks run at once (the render function's concurrency; default: CPU count)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the handlers' INFO logs")


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
    say("starting the embedded local AWS (moto)")
    with running_stack(
        allow_loopback=args.allow_loopback,
        verbose=args.verbose,
        render_concurrency=args.concurrency,
        folders={"OutputBucket": out, "TempBucket": work / "temp"},
        work_dir=work / "spool",
    ) as local:
        stack = CollageStack(STACK, local.outputs(), local.client)
        try:
            execution = start(stack, args)
        except StackError as error:
            say(str(error))
            return 1
        status = follow_to_summary(stack, execution, args, out=summary_out)
    written = [p for p in out.rglob("*") if p.is_file() and WORK_FOLDER not in p.parts]
    say(f"{len(written)} objects written under {args.out}")
    return status
