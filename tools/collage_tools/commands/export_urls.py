"""`collage export-urls`: database rows -> the workflow's CSV (optionally uploaded to S3).

Examples:
  collage export-urls --db sqlite:///covers.db --table covers -o covers.csv
  COLLAGE_DB_URL=mysql+pymysql://reader@db.internal/app COLLAGE_DB_PASSWORD=... \\
    collage export-urls --query "SELECT handle AS creator_name, url AS cover_url, ts AS updated_at
    FROM covers" --since 2024-05-01 -o covers.csv --upload s3://INPUT_BUCKET/csv-files/
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from collage_tools import dbexport
    from collage_tools.dbexport import ExportStats

PROG = "collage export-urls"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The URL may come from the environment (COLLAGE_DB_URL, or the variable named by "
        "--db-env) and the password from COLLAGE_DB_PASSWORD, keeping them off the command line. "
        "Exit status: 0 done, 1 failed (connection, query, writing, upload), 2 bad arguments."
    )
    db = parser.add_mutually_exclusive_group()
    db.add_argument(
        "--db", metavar="URL", help="SQLAlchemy database URL (default: $COLLAGE_DB_URL)"
    )
    db.add_argument("--db-env", metavar="VAR", help="read the database URL from this variable")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", metavar="NAME", help="export this table (identifiers are quoted)")
    what.add_argument("--query", metavar="SQL", help="export the rows of this SELECT")
    parser.add_argument("--schema", metavar="NAME", help="schema/database of --table")
    for option, default in (("--creator-col", "creator_name"), ("--url-col", "cover_url")):
        parser.add_argument(option, default=default, metavar="COL", help=f"default {default}")
    parser.add_argument(
        "--updated-col", default="updated_at", metavar="COL", help="default updated_at (a date)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="CSV", help="file to write")
    parser.add_argument(
        "--since",
        metavar="DATE",
        help="only rows updated at or after this ISO date/date-time (UTC)",
    )
    parser.add_argument(
        "--upload", metavar="S3_URL", help="then upload, e.g. s3://INPUT_BUCKET/csv-files/"
    )
    parser.add_argument(
        "--batch", type=_positive, default=5000, metavar="N", help="rows per fetch (default 5000)"
    )
    parser.add_argument(
        "--connect-timeout", type=_positive, default=10, metavar="S", help="seconds (default 10)"
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress lines on stderr (auto: on a terminal); the summary is always shown",
    )
    parser.add_argument(
        "--progress-rows", type=_positive, default=100_000, metavar="N", help="default 100000"
    )
    parser.add_argument(
        "--progress-seconds", type=float, default=5.0, metavar="S", help="default 5"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class Progress:
    """Rows written so far, on stderr, every N rows or S seconds (whichever comes first)."""

    def __init__(self, stream: TextIO, every_rows: int, every_seconds: float) -> None:
        self.stream, self.every_rows, self.every_seconds = stream, every_rows, every_seconds
        self.started = self.last_time = time.monotonic()
        self.last_rows = 0

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if rows - self.last_rows < self.every_rows and now - self.last_time < self.every_seconds:
            return
        self.last_rows, self.last_time = rows, now
        rate = rows / max(now - self.started, 1e-9)
        print(f"{PROG}: {rows:,} rows written ({rate:,.0f} rows/s)", file=self.stream, flush=True)


def run(args: argparse.Namespace) -> int:
    from collage_tools import dbexport

    secrets = [os.environ.get(dbexport.PASSWORD_ENV, "")]
    try:
        url = dbexport.resolve_url(args.db, args.db_env)
        secrets.extend(dbexport.url_secrets(url))
        export(args, url)
    except dbexport.ExportError as error:
        print(f"{PROG}: error: {scrub(str(error), secrets)}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug: still one line, and never a password
        message = f"{type(error).__name__}: {error}"
        print(f"{PROG}: unexpected error: {scrub(message, secrets)}", file=sys.stderr)
        return 1
    return 0


def export(args: argparse.Namespace, url: URL) -> None:
    """Check the other arguments, export, say what was written, upload it if asked."""
    from collage_tools import dbexport

    since = dbexport.parse_since(args.since) if args.since else None
    output = Path(args.output)
    dbexport.check_output(output)
    if args.upload:
        dbexport.parse_s3_url(args.upload, output.name)  # fail before the export, not after
    stats = dbexport.export_csv(
        url,
        source_for(args),
        output,
        since=since,
        batch=args.batch,
        connect_timeout=args.connect_timeout,
        on_progress=progress_for(args),
    )
    print(summary(stats, output), file=sys.stderr)
    if args.upload:
        upload_unless_empty(output, args.upload, stats.rows)


def source_for(args: argparse.Namespace) -> dbexport.Source:
    """The table or query to export, and its columns' names."""
    from collage_tools import dbexport

    if args.schema and not args.table:
        raise dbexport.ExportConfigError("--schema goes with --table")
    return dbexport.Source(
        table=args.table,
        query=args.query,
        schema=args.schema,
        columns=dbexport.Columns(args.creator_col, args.url_col, args.updated_col),
    )


def progress_for(args: argparse.Namespace) -> Progress | None:
    """Progress lines on stderr when --progress asks for them (auto: on a terminal)."""
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    return Progress(sys.stderr, args.progress_rows, args.progress_seconds) if show else None


def upload_unless_empty(output: Path, s3_url: str, rows: int) -> None:
    """--upload: the CSV goes up unless it has no rows."""
    from collage_tools import dbexport

    if rows == 0:
        print(f"{PROG}: no rows, so nothing uploaded", file=sys.stderr)
        return
    target = dbexport.upload(output, s3_url)
    print(f"{PROG}: uploaded to {target}", file=sys.stderr)


def summary(stats: ExportStats, output: Path) -> str:
    """One line: rows written, time, rate, and what was left out."""
    line = f"{PROG}: wrote {stats.rows:,} rows to {output} in {stats.seconds:.1f} s"
    if stats.seconds > 0 and stats.rows:
        line += f" ({stats.rows / stats.seconds:,.0f} rows/s)"
    if stats.skipped:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in stats.skipped.most_common())
        line += f"; skipped {sum(stats.skipped.values()):,} rows ({reasons})"
    if stats.bad_updated:
        line += f"; {stats.bad_updated:,} updated_at values were not dates (left empty)"
    return line


def scrub(message: str, secrets: list[str]) -> str:
    """Belt and braces: no password reaches the terminal, whatever a driver put in a message."""
    for secret in secrets:
        if len(secret) >= 4:  # shorter ones would mangle ordinary words
            for form in {secret, quote(secret, safe="")}:
                message = message.replace(form, "***")
    return " ".join(message.split("\n"))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m collage_tools.commands.export_urls`): same as the subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
