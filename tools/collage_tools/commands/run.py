"""`collage run`: the whole workflow on the embedded local AWS, for a CSV file or an SQS message.

The run starts as on AWS: the CSV is uploaded under csv-files/ (its event starts the run), or
the message is sent to the queue (polled as Lambda's event source mapping polls it), and the
run is followed with the same client as `collage submit`. Prints the run summary as JSON on
stdout, progress on stderr, writes the run's report and collages under --out at their S3 keys,
and exits 0 only if the run succeeded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collage_tools.commands.submit import add_open_argument, follow_to_summary, say, start


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
    parser.add_argument("--verbose", action="store_true", help="show the handlers' INFO logs")
    add_open_argument(parser)


def run(args: argparse.Namespace) -> int:
    source = args.csv or args.message
    if not source.is_file():
        say(f"no such file: {source}")
        return 2
    from collage_tools.emulator import STACK, running_stack
    from collage_tools.stack_client import CollageStack, StackError

    args.key, args.download, args.poll = None, args.out, 0.25
    summary_out = sys.stdout  # before running_stack takes stdout from the handlers
    say("starting the embedded local AWS (moto)")
    with running_stack(allow_loopback=args.allow_loopback, verbose=args.verbose) as local:
        stack = CollageStack(STACK, local.outputs(), local.client)
        try:
            execution = start(stack, args)
        except StackError as error:
            say(str(error))
            return 1
        return follow_to_summary(stack, execution, args, out=summary_out)
