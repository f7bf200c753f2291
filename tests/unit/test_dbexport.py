"""`collage export-urls` against SQLite: CSV content, filters, errors, atomic output, secrets."""

from __future__ import annotations

import io
import socket
import sqlite3
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from collage_tools import dbexport
from collage_tools.commands import export_urls
from collage_tools.files import atomic_output
from tests.support.export import export, read_csv
from tests.support.reference_csv import read_rows

ROWS = [
    # creator, url, updated_at (as stored by an app writing SQLite text)
    ("zoë", "https://cdn.example/z1.jpg", "2024-05-01 10:00:00"),
    ("zoë", "https://cdn.example/z2.jpg", "2024-05-02T10:00:00"),
    ("東京の猫 🐱", "https://cdn.example/t1.jpg?x=1,2", "2024-04-30T23:59:59+00:00"),
    ("مرحبا", "https://cdn.example/a1.jpg", None),
    ('bob, "the builder"', "https://cdn.example/b1.jpg", "2024-01-01"),
    ('bob, "the builder"', "https://cdn.example/b1.jpg", "2024-01-01"),  # duplicate: kept
    ("line\nbreak", "https://cdn.example/n1.jpg", "2024-03-03 03:03:03"),
    (None, "https://cdn.example/nobody.jpg", "2024-01-01"),
    ("   ", "https://cdn.example/blank.jpg", "2024-01-01"),
    ("nourl", None, "2024-01-01"),
]


def make_db(path: Path, rows=ROWS, table: str = "covers") -> str:
    table = table.replace('"', '""')
    with sqlite3.connect(path) as db:
        db.execute(
            f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, creator_name TEXT, '
            "cover_url TEXT, updated_at TEXT)"
        )
        db.executemany(
            f'INSERT INTO "{table}" (creator_name, cover_url, updated_at) VALUES (?, ?, ?)', rows
        )
    return f"sqlite:///{path}"


def workflow_rows(path: Path) -> tuple[list[tuple[str, str, str]], list]:
    issues: list = []
    rows = [
        (r.creator, r.url, r.updated_at)
        for r in read_rows(io.BytesIO(path.read_bytes()), issues.append)
    ]
    return rows, issues


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".part")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return make_db(tmp_path / "covers.db")


def test_table_export_writes_the_workflow_csv(db_url, tmp_path, capsys):
    out = tmp_path / "covers.csv"
    assert export("--db", db_url, "--table", "covers", "-o", str(out)) == 0
    data = out.read_bytes()
    assert data.startswith(b"creator_name,cover_url,updated_at\n")
    assert "東京の猫 🐱".encode() in data  # UTF-8, no BOM
    assert read_csv(out)[1:] == [
        ['bob, "the builder"', "https://cdn.example/b1.jpg", "2024-01-01"],
        ['bob, "the builder"', "https://cdn.example/b1.jpg", "2024-01-01"],
        ["zoë", "https://cdn.example/z2.jpg", "2024-05-02T10:00:00"],
        ["zoë", "https://cdn.example/z1.jpg", "2024-05-01T10:00:00"],
        ["مرحبا", "https://cdn.example/a1.jpg", ""],
        ["東京の猫 🐱", "https://cdn.example/t1.jpg?x=1,2", "2024-04-30T23:59:59+00:00"],
    ]
    err = capsys.readouterr().err
    assert "wrote 6 rows" in err
    assert (
        "skipped 4 rows (2 NULL or blank creator, 1 a line break in a value, 1 NULL or blank URL)"
        in err
    )
    assert err.count("\n") == 1  # not a terminal: only the summary line


def test_export_round_trips_through_the_workflow_reader(db_url, tmp_path):
    out = tmp_path / "covers.csv"
    assert export("--db", db_url, "--table", "covers", "-o", str(out)) == 0
    rows, issues = workflow_rows(out)
    exported = [tuple(r) for r in read_csv(out)[1:]]
    # The reader keeps the first of the duplicate pair and warns about the second; nothing else.
    assert [(i.severity, "duplicate" in i.message) for i in issues] == [("warning", True)]
    assert rows == [exported[0], *exported[2:]]
    assert len(rows) == 5


def test_names_that_start_like_a_formula_are_marked_as_text_and_read_back_as_stored(tmp_path):
    """A spreadsheet opening the export must not run `=HYPERLINK(...)`; the workflow must still
    see the name as the database holds it."""
    names = ['=HYPERLINK("http://evil.example","x")', "+1-555", "-minus", "@mention", "'quoted"]
    rows = [(name, f"https://cdn.example/{n}.jpg", "2024-01-01") for n, name in enumerate(names)]
    url, out = make_db(tmp_path / "f.db", rows), tmp_path / "f.csv"
    assert export("--db", url, "--table", "covers", "-o", str(out)) == 0
    written = sorted(row[0] for row in read_csv(out)[1:])
    assert written == sorted(["'" + n for n in names[:4]] + ["'quoted"])
    read_back, issues = workflow_rows(out)
    assert sorted(creator for creator, _, _ in read_back) == sorted(names) and not issues


def test_since_filters_with_inclusive_bound_across_sqlite_spellings(db_url, tmp_path):
    out = tmp_path / "recent.csv"
    code = export(
        "--db", db_url, "--table", "covers", "-o", str(out), "--since", "2024-05-01T10:00"
    )
    assert code == 0
    # '2024-05-01 10:00:00' (space) counts as equal, '2024-05-02T10:00:00' (T) as later.
    assert [r[1] for r in read_csv(out)[1:]] == [
        "https://cdn.example/z2.jpg",
        "https://cdn.example/z1.jpg",
    ]
    code = export(
        "--db", db_url, "--table", "covers", "-o", str(out), "--since", "2024-05-01T12:00+02:00"
    )
    assert code == 0  # 10:00 UTC
    assert len(read_csv(out)) == 3


def test_since_is_a_bound_parameter_not_sql_text(db_url):
    import sqlalchemy as sa

    since = dbexport.parse_since("2024-05-01")
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        for source in (
            dbexport.Source(table="covers"),
            dbexport.Source(query="SELECT creator_name, cover_url, updated_at FROM covers"),
        ):
            compiled = dbexport.build_statement(connection, source, since).compile(connection)
            assert "2024" not in str(compiled)
            assert compiled.params["since"] == "2024-05-01 00:00:00"
    engine.dispose()


def test_table_identifiers_are_quoted(tmp_path):
    rows = [("ann", "https://cdn.example/1.jpg", "2024-01-01")]
    hostile = 'covers"; DROP TABLE keep; --'
    url = make_db(tmp_path / "q.db", rows, table=hostile)
    with sqlite3.connect(tmp_path / "q.db") as db:
        db.execute("CREATE TABLE keep (x)")
    out = tmp_path / "q.csv"
    assert export("--db", url, "--table", hostile, "-o", str(out)) == 0
    assert read_csv(out)[1] == ["ann", "https://cdn.example/1.jpg", "2024-01-01"]
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT count(*) FROM keep").fetchone() == (0,)


def test_query_columns_are_mapped_by_name(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE media (handle TEXT, link TEXT, changed TEXT, note TEXT)")
        db.executemany(
            "INSERT INTO media VALUES (?, ?, ?, ?)",
            [
                ("ann", "https://cdn.example/a.jpg", "2024-02-02 12:30:00", "12:30 :x 100%"),
                ("ann", "https://cdn.example/b.jpg", "2023-02-02", "other"),
            ],
        )
    out = tmp_path / "out.csv"
    query = (
        "SELECT note, changed, link, handle FROM media "
        "WHERE note LIKE '%:x 100%' OR note = '12:30';"
    )
    argv = ["--db", f"sqlite:///{path}", "--query", query, "-o", str(out)]
    cols = ["--creator-col", "handle", "--url-col", "LINK", "--updated-col", "changed"]
    assert export(*argv, *cols) == 0
    assert read_csv(out) == [
        ["creator_name", "cover_url", "updated_at"],
        ["ann", "https://cdn.example/a.jpg", "2024-02-02T12:30:00"],
    ]
    # --since wraps the query as a subquery; AS names work as the default mapping.
    query = "SELECT handle AS creator_name, link AS cover_url, changed AS updated_at FROM media"
    assert (
        export(
            "--db", f"sqlite:///{path}", "--query", query, "-o", str(out), "--since", "2024-01-01"
        )
        == 0
    )
    assert [r[1] for r in read_csv(out)[1:]] == ["https://cdn.example/a.jpg"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--table", "covers", "--url-col", "link"], "table 'covers' has no column 'link'"),
        (
            ["--query", "SELECT creator_name AS who, cover_url FROM covers"],
            "has no columns 'creator_name', 'updated_at'",
        ),
        (
            ["--query", "SELECT cover_url FROM covers", "--since", "2024-01-01"],
            "has no columns 'creator_name', 'updated_at'",
        ),
        (["--query", "SELECT creator_name FORM covers"], 'query failed: near "covers": syntax'),
        (["--query", "SELECT * FROM nowhere"], "query failed: no such table: nowhere"),
        (["--table", "nowhere"], "table 'nowhere' does not exist"),
    ],
)
def test_runtime_errors_are_one_line_exit_1_and_leave_no_file(
    db_url, tmp_path, capsys, argv, expected
):
    out = tmp_path / "covers.csv"
    assert export("--db", db_url, "-o", str(out), *argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("collage export-urls: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("DELETE FROM covers", "--query must be one SELECT; it starts with DELETE"),
        ("  drop table covers;", "--query must be one SELECT; it starts with DROP"),
        ("SELECT 1; DROP TABLE covers", "a second statement at character 9"),
        ("SELECT 1 ;\nDELETE FROM covers;", "a second statement at character 10"),
        ("WITH x AS (DELETE FROM covers) SELECT 1", "DELETE at character 12 would write"),
        ("SELECT * INTO copy FROM covers", "INTO at character 10 would write"),
        ("SELECT * FROM covers FOR UPDATE", "UPDATE at character 26 would write"),
        ("SELECT 'it''s", "a quote or comment at character 12 is not closed"),
        ("ATTACH DATABASE 'x.db' AS x", "it starts with ATTACH"),
        ("PRAGMA query_only = OFF", "it starts with PRAGMA"),
        ("", "it starts with nothing"),
        (";", "it starts with nothing"),
    ],
)
def test_a_query_that_is_not_one_select_is_refused_before_connecting(
    db_url, tmp_path, capsys, monkeypatch, query, expected
):
    def no_connection(*args, **kwargs):
        raise AssertionError("the database was contacted")

    monkeypatch.setattr(dbexport, "_engine", no_connection)
    out = tmp_path / "x.csv"
    assert export("--db", db_url, "--query", query, "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("collage export-urls: error: --query") and one_line(err, expected)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "query",
    [
        "SELECT creator_name, cover_url, updated_at FROM covers WHERE creator_name <> 'a;b'",
        "select creator_name, cover_url, updated_at from covers -- not ; DELETE\n",
        'SELECT creator_name, cover_url, updated_at FROM "covers" /* ; DROP */;',
        "SELECT creator_name, REPLACE(cover_url, 'x', 'x') AS cover_url, updated_at FROM covers",
        "WITH c AS (SELECT * FROM covers) SELECT creator_name, cover_url, updated_at FROM c",
        "SELECT [creator_name], cover_url, updated_at FROM covers WHERE 'drop' <> 'into'",
    ],
)
def test_selects_with_such_words_in_literals_names_and_comments_pass(db_url, tmp_path, query):
    out = tmp_path / "x.csv"
    assert export("--db", db_url, "--query", query, "-o", str(out)) == 0
    assert len(read_csv(out)) == 7


def test_the_session_is_read_only_whatever_the_check_lets_through(db_url, tmp_path, capsys):
    from unittest import mock

    out = tmp_path / "x.csv"
    with mock.patch.object(dbexport, "check_query", lambda sql, backend: sql):
        assert export("--db", db_url, "--query", "DELETE FROM covers", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert one_line(err, "query failed: attempt to write a readonly database")
    with sqlite3.connect(tmp_path / "covers.db") as db:
        assert db.execute("SELECT count(*) FROM covers").fetchone() == (len(ROWS),)


def one_line(err: str, expected: str) -> bool:
    return expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_failure_mid_stream_keeps_the_old_csv_and_removes_the_temp_file(db_url, tmp_path, capsys):
    out = tmp_path / "covers.csv"
    out.write_text("previous export\n")
    # json() fails only when it reaches a row with id > 4, after earlier batches were written.
    query = (
        "SELECT creator_name, cover_url, updated_at, "
        "CASE WHEN id > 4 THEN json('{broken') ELSE 1 END AS boom FROM covers ORDER BY id"
    )
    code = export("--db", db_url, "--query", query, "-o", str(out), "--batch", "2")
    assert code == 1
    assert "reading rows failed: malformed JSON" in capsys.readouterr().err
    assert out.read_text() == "previous export\n"
    assert leftovers(tmp_path) == []


def test_interrupt_while_writing_removes_the_temp_file(tmp_path):
    target = tmp_path / "x.csv"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as handle:
        handle.write("partial")
        assert leftovers(tmp_path) != []
        raise KeyboardInterrupt
    assert not target.exists() and leftovers(tmp_path) == []


def test_written_file_has_the_usual_mode(db_url, tmp_path):
    out = tmp_path / "covers.csv"
    assert export("--db", db_url, "--table", "covers", "-o", str(out)) == 0
    assert out.stat().st_mode & 0o777 == 0o644  # umask 022 here; mkstemp alone gives 0600


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--db", "not a url"], "not a SQLAlchemy URL"),
        (["--db", "oracle+nodriver://u@h/db"], "unknown database type 'oracle+nodriver'"),
        ([], "no database URL: pass --db or set COLLAGE_DB_URL"),
        (["--db-env", "MY_DB"], "no database URL: pass --db or set MY_DB"),
        (["--db", "sqlite://", "--since", "last week"], "--since 'last week' is not an ISO 8601"),
        (
            ["--db", "sqlite://", "-o", "/nonexistent-dir/x.csv"],
            "output directory /nonexistent-dir does not exist",
        ),
        (["--db", "sqlite://", "--upload", "https://bucket/x"], "--upload must be an s3://"),
        (["--db", "sqlite://", "--upload", "s3:///key"], "has no bucket name"),
        (
            ["--db", "sqlite://", "--schema", "s", "--query", "SELECT 1"],
            "--schema goes with --table",
        ),
    ],
)
def test_config_errors_exit_2(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.delenv("COLLAGE_DB_URL", raising=False)
    monkeypatch.delenv("MY_DB", raising=False)
    full = ["-o", str(tmp_path / "x.csv"), *argv]
    if "--query" not in argv:
        full += ["--table", "covers"]
    assert export(*full) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_sqlite_file_is_not_created(tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert export("--db", f"sqlite:///{tmp_path}/missing.db", "--table", "t", "-o", str(out)) == 1
    assert "missing.db does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_url_and_password_from_the_environment(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DB", db_url)
    out = tmp_path / "covers.csv"
    assert export("--db-env", "SOURCE_DB", "--table", "covers", "-o", str(out)) == 0
    monkeypatch.setenv("COLLAGE_DB_URL", db_url)
    assert export("--table", "covers", "-o", str(out)) == 0
    assert len(read_csv(out)) == 7

    env = {
        "COLLAGE_DB_URL": "mysql+pymysql://reader@db.internal/app",
        "COLLAGE_DB_PASSWORD": "pw-x",
    }
    url = dbexport.resolve_url(None, None, env)
    assert (url.username, url.password, url.query["charset"]) == ("reader", "pw-x", "utf8mb4")
    assert dbexport.safe_url(url) == "mysql+pymysql://reader:***@db.internal/app?charset=utf8mb4"


class ClosingServer:
    """A loopback TCP server that accepts and hangs up: a MySQL server that is there but broken."""

    def __init__(self) -> None:
        self.hits = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def broken_mysql():
    server = ClosingServer()
    yield server
    server.close()


def test_secrets_never_reach_the_output(broken_mysql, tmp_path, capsys, monkeypatch):
    secret = "S3cr3t-P@ss/word"
    out = tmp_path / "x.csv"
    monkeypatch.setenv("COLLAGE_DB_PASSWORD", secret)
    monkeypatch.setenv(
        "COLLAGE_DB_URL", f"mysql+pymysql://reader@127.0.0.1:{broken_mysql.port}/app"
    )
    assert export("--table", "covers", "-o", str(out), "--connect-timeout", "3") == 1
    captured = capsys.readouterr()
    assert broken_mysql.hits == 1
    assert secret not in captured.err + captured.out
    assert (
        f"cannot connect to mysql+pymysql://reader:***@127.0.0.1:{broken_mysql.port}/app"
        in captured.err
    )
    assert "(error 2013)" in captured.err and captured.err.count("\n") == 1
    # the same with the password inside --db (URL-encoded, as SQLAlchemy URLs need)
    monkeypatch.delenv("COLLAGE_DB_PASSWORD")
    db = f"mysql+pymysql://reader:S3cr3t-P%40ss%2Fword@127.0.0.1:{broken_mysql.port}/app"
    assert export("--db", db, "--table", "covers", "-o", str(out)) == 1
    captured = capsys.readouterr()
    assert broken_mysql.hits == 2
    assert "S3cr3t" not in captured.err + captured.out and "***" in captured.err
    assert not out.exists()


def test_scrub_removes_passwords_in_any_message():
    message = "boom S3cr3t-P@ss and S3cr3t-P%40ss and\nsecond line"
    assert export_urls.scrub(message, ["S3cr3t-P@ss", ""]) == "boom *** and *** and second line"


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SECRET = "S3cr3t-P@ss/word"
ENCODED = "S3cr3t-P%40ss%2Fword"


@pytest.mark.parametrize(
    ("db", "env_password", "shown"),
    [
        ("mysql+pymysql://reader:{encoded}@127.0.0.1:{port}/app", None, "reader:***@"),
        ("mysql+pymysql://reader@127.0.0.1:{port}/app", SECRET, "reader:***@"),
        ("mysql+pymysql://reader@127.0.0.1:{port}/app?password={encoded}", None, "password=***"),
        pytest.param(
            "mysql+pymysql://reader@127.0.0.1:{port}/app?passwd={encoded}",
            None,
            "passwd=***",
            marks=pytest.mark.filterwarnings("ignore:'passwd' is deprecated"),
        ),
    ],
    ids=["in-the-url", "from-the-environment", "query-password", "query-passwd"],
)
def test_a_refused_connection_never_prints_the_password(
    tmp_path, capsys, monkeypatch, db, env_password, shown
):
    monkeypatch.delenv("COLLAGE_DB_PASSWORD", raising=False)
    if env_password:
        monkeypatch.setenv("COLLAGE_DB_PASSWORD", env_password)
    url = db.format(encoded=ENCODED, port=closed_port())
    assert export("--db", url, "--table", "covers", "-o", str(tmp_path / "x.csv")) == 1
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "Connection refused" in printed and "(error 2003)" in printed and shown in printed
    assert SECRET not in printed and ENCODED not in printed and "S3cr3t" not in printed
    assert printed.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_url_secrets_and_safe_url_cover_the_query():
    url = dbexport.resolve_url(
        "mysql+pymysql://u:pw-1@h/db?passwd=pw-2&ssl_ca=/ca.pem&auth_token=pw-3", None, {}
    )
    assert dbexport.url_secrets(url) == ["pw-1", "pw-2", "pw-3"]
    assert dbexport.safe_url(url) == (
        "mysql+pymysql://u:***@h/db?auth_token=***&charset=utf8mb4&passwd=***&ssl_ca=%2Fca.pem"
    )


def test_progress_lines_every_n_rows(db_url, tmp_path, capsys):
    out = tmp_path / "covers.csv"
    argv = ["--db", db_url, "--table", "covers", "-o", str(out), "--batch", "2"]
    assert export(*argv, "--progress", "always", "--progress-rows", "2") == 0
    lines = capsys.readouterr().err.splitlines()
    # batches of 2 rows from the server; NULL/blank creators (sorted first) are not written
    counts = [line.split(" rows written")[0].rsplit(" ", 1)[1] for line in lines[:-1]]
    assert counts == ["2", "4", "6"]
    assert "wrote 6 rows" in lines[-1]
    assert export(*argv, "--progress", "never") == 0
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (datetime(2024, 5, 1, 10, 0, 0), "2024-05-01T10:00:00"),
        (datetime(2024, 5, 1, 10, 0, 0, 5000), "2024-05-01T10:00:00.005000"),
        (
            datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00+02:00",
        ),
        (date(2024, 5, 1), "2024-05-01"),
        ("2024-05-01", "2024-05-01"),
        (" 2024-05-01 10:00:00 ", "2024-05-01T10:00:00"),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00"),
        (1714557600, "2024-05-01T10:00:00+00:00"),
        ("", ""),
        ("0000-00-00 00:00:00", None),
        ("yesterday", None),
        (b"2024-05-01", "2024-05-01"),
    ],
)
def test_format_updated(value, expected):
    assert dbexport.format_updated(value) == expected


def test_unparseable_updated_at_is_written_empty_and_counted(tmp_path, capsys):
    url = make_db(tmp_path / "u.db", [("ann", "https://cdn.example/1.jpg", "soon")])
    out = tmp_path / "u.csv"
    assert export("--db", url, "--table", "covers", "-o", str(out)) == 0
    assert read_csv(out)[1] == ["ann", "https://cdn.example/1.jpg", ""]
    assert "1 updated_at values were not dates (left empty)" in capsys.readouterr().err
    assert workflow_rows(out) == ([("ann", "https://cdn.example/1.jpg", "")], [])


def test_parse_since_and_s3_targets():
    assert dbexport.parse_since("2024-05-01") == datetime(2024, 5, 1)
    assert dbexport.parse_since("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10)
    assert dbexport.parse_since("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10)
    assert dbexport.parse_since("2024-05-01T10:00:00Z").tzinfo is None
    assert dbexport.parse_s3_url("s3://in/csv-files/", "c.csv") == ("in", "csv-files/c.csv")
    assert dbexport.parse_s3_url("s3://in", "c.csv") == ("in", "c.csv")
    assert dbexport.parse_s3_url("s3://in/csv-files/today.csv", "c.csv") == (
        "in",
        "csv-files/today.csv",
    )


def test_the_collage_command_as_a_process(db_url, tmp_path):
    """What a user runs: exit codes and one-line errors from the real entry point."""
    import subprocess
    import sys

    def collage(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "collage_tools.cli", "export-urls", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    out = tmp_path / "covers.csv"
    done = collage("--db", db_url, "--table", "covers", "-o", str(out))
    assert (done.returncode, done.stdout) == (0, "")
    assert len(read_csv(out)) == 7
    # (a URL that fails to parse: nothing is resolved or contacted)
    bad = "mysql+pymysql://u:pw-secret@host:notaport/db"
    done = collage("--db", bad, "--table", "covers", "-o", str(out))
    assert done.returncode == 2 and "not a SQLAlchemy URL" in done.stderr
    assert done.stderr.count("\n") == 1 and "pw-secret" not in done.stderr
    done = collage("--db", db_url, "--query", "SELECT nope FROM covers", "-o", str(out))
    assert done.returncode == 1 and "no such column: nope" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    done = collage("--db", db_url, "-o", str(out))  # neither --table nor --query: usage error
    assert (
        done.returncode == 2 and "one of the arguments --table --query is required" in done.stderr
    )
