"""The SELECT an export runs: a table's rows through quoted identifiers, or the user's query,
with --since as a bound parameter; the wanted columns found by name in either."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import quoted_name

from collage_tools.dbexport_errors import ExportConfigError, ExportError, db_message

if TYPE_CHECKING:
    from collage_tools.dbexport import Columns, Source


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
    available = _table_columns(connection, source.table, source.schema, where)
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


def _table_columns(connection: Connection, table: str, schema: str | None, where: str) -> list[str]:
    """The table's column names, as the database reports them."""
    try:
        inspector = sa.inspect(connection)
        return [c["name"] for c in inspector.get_columns(table, schema=schema)]
    except sa.exc.NoSuchTableError:
        raise ExportError(f"table {where!r} does not exist") from None
    except sa.exc.DBAPIError as error:
        raise ExportError(
            f"cannot read the columns of table {where!r}: {db_message(error)}"
        ) from None


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


def column_positions(keys: list[str], columns: Columns) -> tuple[int, int, int]:
    """Where the wanted columns are among a result's `keys`."""
    names = _match_columns(keys, columns, "the query result")
    return tuple(keys.index(n) for n in names)  # type: ignore[return-value]


def _match_columns(available: list[str], columns: Columns, where: str) -> list[str]:
    """The actual names of the wanted columns (exact match first, then ignoring case)."""
    found = [(wanted, _find_column(wanted, available)) for wanted in columns.names()]
    missing = [wanted for wanted, name in found if name is None]
    if missing:
        shown = ", ".join(available[:20]) or "none"
        noun = "column" if len(missing) == 1 else "columns"
        raise ExportError(
            f"{where} has no {noun} {', '.join(repr(m) for m in missing)} (columns: {shown}); "
            "name them with --creator-col/--url-col/--updated-col or AS in the query"
        )
    return [name for _, name in found if name is not None]


def _find_column(wanted: str, available: list[str]) -> str | None:
    """`wanted` if it is there, else the one name equal to it ignoring case, else None."""
    if wanted in available:
        return wanted
    folded = [name for name in available if name.lower() == wanted.lower()]
    return folded[0] if len(folded) == 1 else None
