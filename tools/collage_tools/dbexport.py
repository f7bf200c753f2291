"""Export cover URLs from a database into the workflow's CSV (`creator_name,cover_url,updated_at`).

The original system's get_urls step. Any SQLAlchemy URL works: MySQL/MariaDB through PyMySQL
for real use, SQLite out of the box. Rows stream through a server-side cursor (PyMySQL's
SSCursor) in batches, so memory stays flat however many rows there are; the CSV is written to a
temp file beside the target and moved into place only when complete. Nothing is written to
the database: --query must read as one SELECT (check_query, before anything is contacted), and
every session is read-only (SQLite's query_only, MySQL's READ ONLY transactions).

The steps live in modules of their own: dbexport_config (the inputs, checked first),
dbexport_sql (the reading of --query), dbexport_statement (the SELECT run), dbexport_rows (rows
to CSV rows), dbexport_errors (the errors and their messages). This module runs them.

Errors are `ExportError`s with one-line messages that never contain the password:
`exit_code` 2 for what is wrong before anything is contacted (arguments, URL syntax, output
directory), 1 for what fails afterwards (connection, credentials, query, columns, writing, upload).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from collage_tools.dbexport_config import (
    PASSWORD_ENV,
    URL_ENV,
    check_output,
    parse_s3_url,
    parse_since,
    resolve_url,
    safe_url,
    url_secrets,
)
from collage_tools.dbexport_errors import ExportConfigError, ExportError, db_message, first_line
from collage_tools.dbexport_rows import csv_record, format_updated
from collage_tools.dbexport_sql import check_query
from collage_tools.dbexport_statement import build_statement, column_positions
from collage_tools.files import atomic_output

__all__ = [
    "DEFAULT_BATCH",
    "HEADER",
    "PASSWORD_ENV",
    "URL_ENV",
    "Columns",
    "ExportConfigError",
    "ExportError",
    "ExportStats",
    "Source",
    "build_statement",
    "check_output",
    "check_query",
    "db_message",
    "export_csv",
    "format_updated",
    "parse_s3_url",
    "parse_since",
    "resolve_url",
    "safe_url",
    "upload",
    "url_secrets",
]

HEADER = ("creator_name", "cover_url", "updated_at")
DEFAULT_BATCH = 5000


@dataclass(frozen=True)
class Columns:
    creator: str = "creator_name"
    url: str = "cover_url"
    updated: str = "updated_at"

    def names(self) -> tuple[str, str, str]:
        return (self.creator, self.url, self.updated)


@dataclass(frozen=True)
class Source:
    """Either a table (queried through quoted identifiers) or the user's own SELECT."""

    table: str | None = None
    query: str | None = None
    schema: str | None = None
    columns: Columns = field(default_factory=Columns)


@dataclass
class ExportStats:
    rows: int = 0  # rows written to the CSV
    skipped: Counter = field(default_factory=Counter)  # reason -> rows left out
    bad_updated: int = 0  # updated_at values that are not dates, written empty
    cursor: str = ""  # DBAPI cursor class used (SSCursor = server-side streaming)
    seconds: float = 0.0


def export_csv(
    url: URL,
    source: Source,
    output: Path,
    *,
    since: datetime | None = None,
    batch: int = DEFAULT_BATCH,
    connect_timeout: int = 10,
    on_progress: Callable[[int], None] | None = None,
) -> ExportStats:
    """Write the rows of `source` to `output` as the workflow's CSV; see the module docstring."""
    check_output(output)
    if source.query is not None:
        check_query(source.query, url.get_backend_name())
    started = time.monotonic()
    engine = _engine(url, connect_timeout)
    try:
        connection = _connect(engine, url)
        try:
            stats = _export(connection, source, output, since, batch, on_progress)
        except BaseException:
            # An unread server-side result would be drained by a normal close: drop it instead.
            connection.invalidate()
            raise
        finally:
            connection.close()
    finally:
        engine.dispose()
    stats.seconds = time.monotonic() - started
    return stats


def _engine(url: URL, connect_timeout: int) -> sa.Engine:
    connect_args = _connect_args(url, connect_timeout)
    try:
        return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    except sa.exc.NoSuchModuleError:
        raise ExportConfigError(
            f"unknown database type {url.drivername!r} in {safe_url(url)} "
            "(use mysql+pymysql://... or sqlite:///...)"
        ) from None
    except ImportError as error:
        raise ExportConfigError(
            f"the driver for {url.drivername} is not installed ({error.name or error})"
        ) from None
    except sa.exc.ArgumentError as error:
        raise ExportConfigError(f"bad database URL {safe_url(url)}: {first_line(error)}") from None


def _connect_args(url: URL, connect_timeout: int) -> dict[str, Any]:
    """The driver's options; a SQLite file that does not exist is refused, as SQLite would
    silently create it and then report a missing table."""
    backend = url.get_backend_name()
    if backend == "mysql":
        return {"connect_timeout": connect_timeout}
    if backend == "sqlite" and _names_missing_file(url):
        raise ExportError(f"SQLite database file {url.database} does not exist")
    return {}


def _names_missing_file(url: URL) -> bool:
    """A SQLite URL naming a file (not memory, not a URI) that is not there."""
    database = url.database
    return (
        database not in (None, "", ":memory:")
        and "uri" not in url.query
        and not Path(str(database)).is_file()
    )


# Each session is read-only, whatever the query: what check_query's reading misses (a dialect's
# syntax it does not know, a function that writes) is refused by the server itself.
_READ_ONLY = {"sqlite": "PRAGMA query_only = ON", "mysql": "SET SESSION TRANSACTION READ ONLY"}


def _connect(engine: sa.Engine, url: URL) -> Connection:
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as error:
        raise ExportError(f"cannot connect to {safe_url(url)}: {db_message(error)}") from None
    read_only = _READ_ONLY.get(url.get_backend_name())
    if read_only:
        try:
            connection.exec_driver_sql(read_only)
        except sa.exc.DBAPIError as error:
            connection.close()
            raise ExportError(f"cannot make the session read-only: {db_message(error)}") from None
    return connection


def _export(
    connection: Connection,
    source: Source,
    output: Path,
    since: datetime | None,
    batch: int,
    on_progress: Callable[[int], None] | None,
) -> ExportStats:
    result = _execute(connection, build_statement(connection, source, since), batch)
    positions = column_positions(list(result.keys()), source.columns)
    stats = ExportStats(cursor=type(getattr(result, "cursor", None)).__name__)
    try:
        with atomic_output(output) as handle:
            _write_rows(handle, result, positions, stats, on_progress)
    except sa.exc.DBAPIError as error:
        raise ExportError(f"reading rows failed: {db_message(error)}") from None
    except OSError as error:
        raise ExportError(f"cannot write {output}: {error.strerror or error}") from None
    return stats


def _execute(connection: Connection, statement: sa.Executable, batch: int) -> sa.CursorResult[Any]:
    """The statement's rows, streamed `batch` at a time (through a server-side cursor where
    the driver has one)."""
    streaming = connection.execution_options(stream_results=True, yield_per=batch)
    try:
        result = streaming.execute(statement)
    except sa.exc.DBAPIError as error:
        raise ExportError(f"query failed: {db_message(error)}") from None
    except sa.exc.StatementError as error:
        raise ExportError(f"query failed: {first_line(error.orig or error)}") from None
    if not result.returns_rows:
        raise ExportError("the query returns no result set (it must be a SELECT)")
    return result


def _write_rows(
    handle: IO[Any],
    result: sa.CursorResult[Any],
    positions: tuple[int, int, int],
    stats: ExportStats,
    on_progress: Callable[[int], None] | None,
) -> None:
    """The CSV: its header, then the rows kept, batch by batch (`on_progress` after each)."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(HEADER)
    for partition in result.partitions():
        for row in partition:
            record = csv_record(row, positions, stats)
            if record is not None:
                writer.writerow(record)
                stats.rows += 1
        if on_progress is not None:
            on_progress(stats.rows)


def upload(path: Path, s3_url: str) -> str:
    """Put the CSV where the workflow starts; returns the s3:// URL written."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    from collage.aws import Store

    bucket, key = parse_s3_url(s3_url, path.name)
    try:
        Store().upload_file(str(path), bucket, key, "text/csv; charset=utf-8")
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        raise ExportError(f"upload to s3://{bucket}/{key} failed: {first_line(error)}") from None
    return f"s3://{bucket}/{key}"
