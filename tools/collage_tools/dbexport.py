"""Export cover URLs from a database into the workflow's CSV (`creator_name,cover_url,updated_at`).

The original system's get_urls step. Any SQLAlchemy URL works: MySQL/MariaDB through PyMySQL
for real use, SQLite out of the box. Rows stream through a server-side cursor (PyMySQL's
SSCursor) in batches, so memory stays flat however many rows there are; the CSV is written to a
temp file beside the target and moved into place only when complete. Nothing is written to
the database: --query must read as one SELECT (check_query, before anything is contacted), and
every session is read-only (SQLite's query_only, MySQL's READ ONLY transactions).

Errors are `ExportError`s with one-line messages that never contain the password:
`exit_code` 2 for what is wrong before anything is contacted (arguments, URL syntax, output
directory), 1 for what fails afterwards (connection, credentials, query, columns, writing, upload).
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.sql.elements import quoted_name

from collage.csv_input import spreadsheet_safe
from collage.engine.url_guard import MASK, is_secret_parameter
from collage_tools.files import atomic_output

HEADER = ("creator_name", "cover_url", "updated_at")
URL_ENV = "COLLAGE_DB_URL"
PASSWORD_ENV = "COLLAGE_DB_PASSWORD"
DEFAULT_BATCH = 5000

SKIP_NO_CREATOR = "NULL or blank creator"
SKIP_NO_URL = "NULL or blank URL"
SKIP_NOT_UTF8 = "bytes that are not UTF-8"
SKIP_LINE_BREAK = "a line break in a value"  # the workflow reads one row a line


class ExportError(Exception):
    """A failure with a one-line, password-free message; `exit_code` is 1 (runtime)."""

    exit_code = 1


class ExportConfigError(ExportError):
    """Wrong arguments, environment or URL syntax, found before contacting anything."""

    exit_code = 2


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


# --- configuration ------------------------------------------------------------------------------


def url_secrets(url: URL) -> list[str]:
    """What of the URL must never be shown: its password, and any credential in its query."""
    values = [str(url.password or "")]
    for name, value in url.query.items():
        if is_secret_parameter(name):  # a driver's credential (PyMySQL: ?password=, ?passwd=)
            values.extend([value] if isinstance(value, str) else value)
    return [v for v in values if v]


def safe_url(url: URL) -> str:
    """The URL for messages: the password, and credentials in the query, replaced with ***."""
    masked = {name: MASK for name in url.query if is_secret_parameter(name)}
    text = url.update_query_dict(masked).render_as_string(hide_password=True)
    return text.replace("=%2A%2A%2A", "=***")


def resolve_url(db: str | None, db_env: str | None, environ: Mapping[str, str] = os.environ) -> URL:
    """The database URL from --db, the variable named by --db-env, or COLLAGE_DB_URL;
    COLLAGE_DB_PASSWORD, when set, becomes (or replaces) the URL's password."""
    if db is not None and db_env is not None:
        raise ExportConfigError("give either --db or --db-env, not both")
    if db is None:
        name = db_env or URL_ENV
        db = environ.get(name)
        if not db:
            raise ExportConfigError(f"no database URL: pass --db or set {name}")
    try:
        url = sa.make_url(db.strip())
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ExportConfigError(
            "the database URL is not a SQLAlchemy URL "
            "(e.g. mysql+pymysql://user@host/db or sqlite:///path/to/file.db)"
        ) from None
    password = environ.get(PASSWORD_ENV)
    if password:
        url = url.set(password=password)
    if url.get_backend_name() == "mysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})  # 4-byte UTF-8 (emoji) intact
    return url


# Words that write, lock or make a SELECT write (INTO OUTFILE, a table, @var), wherever they
# stand as SQL: PostgreSQL runs DML inside a WITH, MySQL writes files with SELECT ... INTO.
# Followed by "(" a word is a function (MySQL's INSERT(), REPLACE()) and passes.
_WRITING_WORDS = frozenset(
    {
        *("INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE", "INTO"),
        *("DROP", "ALTER", "CREATE", "RENAME", "GRANT", "REVOKE", "CALL", "LOCK"),
        *("ATTACH", "DETACH", "PRAGMA"),
    }
)


@cache
def _sql_lexer(mysql: bool) -> re.Pattern[str]:
    """Literals, quoted names and comments (skipped), then what is SQL: words and ';'."""
    if mysql:  # MySQL's strings take backslash escapes; it has no [name]
        strings = [r"'(?:''|\\[\s\S]|[^'\\])*'", r'"(?:""|\\[\s\S]|[^"\\])*"']
        opening = r"['\"`]|/\*"
    else:
        strings = [r"'(?:''|[^'])*'", r'"(?:""|[^"])*"', r"\[[^\]]*\]"]
        opening = r"['\"`\[]|/\*"
    skipped = [
        *strings,
        r"`(?:``|[^`])*`",
        r"--(?=\s|$)[^\n]*",  # MySQL needs the space; "--x" stays SQL, the safer reading
        r"/\*(?!M?!)[\s\S]*?\*/",
    ]
    return re.compile(
        f"(?P<skip>{'|'.join(skipped)})|(?P<executable>/\\*M?!)"
        rf"|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)(?P<call>\s*\()?|(?P<end>;)|(?P<open>{opening})"
    )


def _sql_tokens(text: str, mysql: bool) -> Iterator[tuple[str, bool, str]]:
    """(word in capitals or ';', whether a '(' follows it, where) for what is SQL in `text`."""
    for match in _sql_lexer(mysql).finditer(text):
        at = f"at character {match.start() + 1}"
        if match.lastgroup == "executable":
            raise ExportConfigError(f"--query: executable comments (/*! */) are refused ({at})")
        if match.lastgroup == "open":
            raise ExportConfigError(f"--query: a quote or comment {at} is not closed")
        if match.lastgroup != "skip":
            token = match.group("word") or match.group("end")
            yield token.upper(), match.group("call") is not None, at


def check_query(sql: str, backend: str) -> str:
    """--query without its trailing ';', or ExportConfigError unless it is one SELECT.

    A reading of the SQL as `backend` spells literals and comments, before anything is
    contacted; the session is read-only too (_READ_ONLY), which holds whatever this misses.
    """
    text = sql.strip().rstrip(";").rstrip()
    tokens = list(_sql_tokens(text, backend == "mysql"))
    first = tokens[0][0] if tokens else "nothing"
    if first not in ("SELECT", "WITH"):
        raise ExportConfigError(f"--query must be one SELECT; it starts with {first}")
    for token, call, at in tokens:
        if token == ";":
            raise ExportConfigError(f"--query must be one SELECT; a second statement {at}")
        if token in _WRITING_WORDS and not call:
            raise ExportConfigError(f"--query must be one SELECT; {token} {at} would write")
    return text


def parse_since(text: str) -> datetime:
    """--since as a naive UTC datetime (a date means its midnight; naive input means UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ExportConfigError(
            f"--since {text!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def parse_s3_url(url: str, filename: str) -> tuple[str, str]:
    """(bucket, key) for --upload; a URL ending in '/' (or a bare bucket) gets `filename` added."""
    if not url.startswith("s3://"):
        raise ExportConfigError(f"--upload must be an s3://bucket/prefix URL, got {url!r}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise ExportConfigError(f"--upload URL {url!r} has no bucket name")
    if not key or key.endswith("/"):
        key += filename
    return bucket, key


def check_output(path: Path) -> None:
    if path.is_dir():
        raise ExportConfigError(f"output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ExportConfigError(f"output directory {path.parent} does not exist")


# --- the export ---------------------------------------------------------------------------------


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
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "mysql":
        connect_args["connect_timeout"] = connect_timeout
    elif (
        backend == "sqlite"
        and url.database not in (None, "", ":memory:")
        and "uri" not in url.query
        and not Path(url.database).is_file()
    ):
        # SQLite would silently create a missing file and then report a missing table.
        raise ExportError(f"SQLite database file {url.database} does not exist")
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
        raise ExportConfigError(f"bad database URL {safe_url(url)}: {_first_line(error)}") from None


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
    statement = build_statement(connection, source, since)
    streaming = connection.execution_options(stream_results=True, yield_per=batch)
    try:
        result = streaming.execute(statement)
    except sa.exc.DBAPIError as error:
        raise ExportError(f"query failed: {db_message(error)}") from None
    except sa.exc.StatementError as error:
        raise ExportError(f"query failed: {_first_line(error.orig or error)}") from None
    if not result.returns_rows:
        raise ExportError("the query returns no result set (it must be a SELECT)")
    positions = _positions(list(result.keys()), source.columns)
    stats = ExportStats(cursor=type(getattr(result, "cursor", None)).__name__)
    try:
        with atomic_output(output) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            for partition in result.partitions():
                for row in partition:
                    record = _record(row, positions, stats)
                    if record is not None:
                        writer.writerow(record)
                        stats.rows += 1
                if on_progress is not None:
                    on_progress(stats.rows)
    except sa.exc.DBAPIError as error:
        raise ExportError(f"reading rows failed: {db_message(error)}") from None
    except OSError as error:
        raise ExportError(f"cannot write {output}: {error.strerror or error}") from None
    return stats


def build_statement(
    connection: Connection, source: Source, since: datetime | None
) -> sa.Executable:
    """The SELECT to run: table rows via quoted identifiers, or the user's query (wrapped as a
    subquery when --since needs a WHERE); `since` is always a bound parameter."""
    if source.table:
        return _table_statement(connection, source, since)
    if not source.query:
        raise ExportConfigError("give --table or --query")
    sql = source.query.strip().rstrip(";").strip()
    # Colons would otherwise be read as SQLAlchemy bind parameters (e.g. inside '12:30').
    text = sa.text(sql.replace(":", "\\:"))
    if since is None:
        return text
    names = _probe_columns(connection, text, source.columns)
    inner = text.columns(*(sa.column(quoted_name(n, True)) for n in names)).subquery("export_q")
    creator, url, updated = (inner.c[n] for n in names)
    statement = (
        sa.select(creator, url, updated)
        .where(_since_clause(connection, updated, since))
        .order_by(creator, updated.desc(), url)
    )
    return statement


def _table_statement(connection: Connection, source: Source, since: datetime | None) -> sa.Select:
    assert source.table is not None
    where = f"{source.schema}.{source.table}" if source.schema else source.table
    try:
        inspector = sa.inspect(connection)
        available = [c["name"] for c in inspector.get_columns(source.table, schema=source.schema)]
    except sa.exc.NoSuchTableError:
        raise ExportError(f"table {where!r} does not exist") from None
    except sa.exc.DBAPIError as error:
        raise ExportError(
            f"cannot read the columns of table {where!r}: {db_message(error)}"
        ) from None
    names = _match_columns(available, source.columns, f"table {where!r}")
    table = sa.table(
        quoted_name(source.table, True),
        *(sa.column(quoted_name(n, True)) for n in names),
        schema=quoted_name(source.schema, True) if source.schema else None,
    )
    creator, url, updated = (table.c[n] for n in names)
    statement = sa.select(creator, url, updated).order_by(creator, updated.desc(), url)
    if since is not None:
        statement = statement.where(_since_clause(connection, updated, since))
    return statement


def _since_clause(
    connection: Connection, column: sa.ColumnElement, since: datetime
) -> sa.ColumnElement[bool]:
    if connection.dialect.name == "sqlite":
        # SQLite stores dates as text in several ISO spellings ('T' or ' '); compare as dates.
        bound: sa.BindParameter[str] = sa.bindparam("since", since.isoformat(sep=" "))
        return sa.func.julianday(column) >= sa.func.julianday(bound)
    return column >= sa.bindparam("since", since, type_=sa.DateTime())


def _probe_columns(connection: Connection, text: sa.TextClause, columns: Columns) -> list[str]:
    """The query's result column names, from running it wrapped with LIMIT 0."""
    probe = sa.select(sa.text("*")).select_from(text.columns().subquery("export_q")).limit(0)
    try:
        keys = list(connection.execute(probe).keys())
    except sa.exc.DBAPIError as error:
        raise ExportError(f"query failed: {db_message(error)}") from None
    return _match_columns(keys, columns, "the query result")


def _positions(keys: list[str], columns: Columns) -> tuple[int, int, int]:
    names = _match_columns(keys, columns, "the query result")
    return tuple(keys.index(n) for n in names)  # type: ignore[return-value]


def _match_columns(available: list[str], columns: Columns, where: str) -> list[str]:
    """The actual names of the wanted columns (exact match first, then ignoring case)."""
    found, missing = [], []
    for wanted in columns.names():
        if wanted in available:
            found.append(wanted)
            continue
        folded = [name for name in available if name.lower() == wanted.lower()]
        if len(folded) == 1:
            found.append(folded[0])
        else:
            missing.append(wanted)
    if missing:
        shown = ", ".join(available[:20]) or "none"
        noun = "column" if len(missing) == 1 else "columns"
        raise ExportError(
            f"{where} has no {noun} {', '.join(repr(m) for m in missing)} (columns: {shown}); "
            "name them with --creator-col/--url-col/--updated-col or AS in the query"
        )
    return found


# --- rows ---------------------------------------------------------------------------------------


def _record(
    row: sa.Row, positions: tuple[int, int, int], stats: ExportStats
) -> tuple[str, str, str] | None:
    creator = _text(row[positions[0]], stats)
    if creator is None:
        return None
    if not creator:
        stats.skipped[SKIP_NO_CREATOR] += 1
        return None
    url = _text(row[positions[1]], stats)
    if url is None:
        return None
    if not url:
        stats.skipped[SKIP_NO_URL] += 1
        return None
    updated = format_updated(row[positions[2]])
    if updated is None:
        stats.bad_updated += 1
        updated = ""
    return spreadsheet_safe(creator), url, updated  # the workflow reads the name back unmarked


def _text(value: object, stats: ExportStats) -> str | None:
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            stats.skipped[SKIP_NOT_UTF8] += 1
            return None
    text = "" if value is None else str(value).strip()
    if "\n" in text or "\r" in text:
        stats.skipped[SKIP_LINE_BREAK] += 1
        return None
    return text


def format_updated(value: object) -> str | None:
    """updated_at as ISO 8601: '' for NULL, None for a value that is not a date or date-time.

    Date-times are written as stored (naive ones mean UTC to the workflow); text is re-spelled
    in ISO form; numbers are taken as Unix epoch seconds.
    """
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    if not text:
        return ""
    if len(text) == 10:
        with suppress(ValueError):
            return date.fromisoformat(text).isoformat()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None  # includes MySQL's zero date '0000-00-00 00:00:00'


# --- output -------------------------------------------------------------------------------------


def upload(path: Path, s3_url: str) -> str:
    """Put the CSV where the workflow starts; returns the s3:// URL written."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    from collage.aws import Store

    bucket, key = parse_s3_url(s3_url, path.name)
    try:
        Store().upload_file(str(path), bucket, key, "text/csv; charset=utf-8")
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        raise ExportError(f"upload to s3://{bucket}/{key} failed: {_first_line(error)}") from None
    return f"s3://{bucket}/{key}"


# --- messages -----------------------------------------------------------------------------------


def db_message(error: sa.exc.DBAPIError) -> str:
    """The driver's own message, one line: 'Access denied ... (MySQL error 1045)'."""
    original = error.orig
    args: tuple[Any, ...] = getattr(original, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{_first_line(args[1])} (error {args[0]})"
    return _first_line(original) or type(original).__name__


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
