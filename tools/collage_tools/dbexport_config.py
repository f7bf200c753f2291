"""`collage export-urls`' inputs, read and checked before anything is contacted: the database
URL (and what of it is secret), --since, --upload's S3 URL and the output path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from collage.engine.url_guard import MASK, is_secret_parameter
from collage_tools.dbexport_errors import ExportConfigError

URL_ENV = "COLLAGE_DB_URL"
PASSWORD_ENV = "COLLAGE_DB_PASSWORD"


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
    try:
        url = sa.make_url(_url_text(db, db_env, environ).strip())
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


def _url_text(db: str | None, db_env: str | None, environ: Mapping[str, str]) -> str:
    """The URL as given: --db, else the variable --db-env names, else COLLAGE_DB_URL."""
    if db is not None and db_env is not None:
        raise ExportConfigError("give either --db or --db-env, not both")
    if db is not None:
        return db
    name = db_env or URL_ENV
    text = environ.get(name)
    if not text:
        raise ExportConfigError(f"no database URL: pass --db or set {name}")
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
