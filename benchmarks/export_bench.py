"""Benchmark `collage export-urls`: rows/s and the exporting process's peak RSS.

Generates N/10 and N rows (default N = 100,000; `--rows 1000000` for the 1M run) in SQLite and,
when a server is available, MariaDB; runs each export as a whole child process; and prints
rows/s and the child's peak RSS (ru_maxrss from wait4). Streaming means memory does not grow
with the row count, so the target is: peak RSS at N rows <= 1.3 x peak RSS at N/10 rows.
Exit status 0 when every target is MET.

  .venv/bin/python benchmarks/export_bench.py [--rows 1000000] [--no-mariadb] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support.mariadb

import sqlalchemy as sa  # noqa: E402

FLAT_LIMIT = 1.3  # peak RSS at N rows / peak RSS at N/10 rows


@dataclass
class Run:
    backend: str
    rows: int
    seconds: float
    peak_mb: float
    csv_mb: float
    written: int


def make_sqlite(directory: Path, rows: int) -> str:
    url = f"sqlite:///{directory / f'bench_{rows}.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.exec_driver_sql(
            "CREATE TABLE covers (id INTEGER PRIMARY KEY, creator_name TEXT, cover_url TEXT, "
            "updated_at TEXT)"
        )
        db.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO covers SELECT i, 'creator_' || (i % 5000) || ' ✨', "
            "'https://cdn.example.com/covers/' || i || '.jpg?sig=' || hex(randomblob(16)), "
            "datetime('2024-01-01', '+' || (i % 100000) || ' minutes') FROM n",
            (rows,),
        )
    engine.dispose()
    return url


def make_mariadb(url: str, rows: int) -> str:
    """Fill a fresh table in the server's database; returns the table name."""
    table = f"covers_bench_{rows}"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        db.exec_driver_sql(
            f"CREATE TABLE {table} (id INT PRIMARY KEY, creator_name VARCHAR(100), "
            "cover_url VARCHAR(300), updated_at DATETIME) CHARACTER SET utf8mb4"
        )
        # seq_1_to_N: MariaDB's Sequence engine, generates the rows inside the server.
        db.exec_driver_sql(
            f"INSERT INTO {table} SELECT seq, CONCAT('creator_', MOD(seq, 5000), ' ✨'), "
            "CONCAT('https://cdn.example.com/covers/', seq, '.jpg?sig=', MD5(seq)), "
            f"'2024-01-01' + INTERVAL MOD(seq, 100000) MINUTE FROM seq_1_to_{rows}"
        )
    engine.dispose()
    return table


def export(backend: str, url: str, table: str, rows: int, out: Path) -> Run:
    """One export as a child process; its peak RSS comes from wait4's rusage."""
    env = dict(os.environ, COLLAGE_DB_URL=url)  # the URL (and password) stay off the command line
    command = [
        sys.executable,
        "-m",
        "collage_tools.commands.export_urls",
        "--table",
        table,
        "-o",
        str(out),
        "--progress",
        "never",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    error = child.stderr.read() if child.stderr else ""  # until the child closes it (exits)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if child.returncode != 0:
        raise SystemExit(f"{backend} export of {rows} rows failed: {error.strip()}")
    with out.open(encoding="utf-8", newline="") as handle:
        written = sum(1 for _ in csv.reader(handle)) - 1
    return Run(backend, rows, seconds, usage.ru_maxrss / 1024, out.stat().st_size / 1e6, written)


def report(runs: list[Run]) -> bool:
    print(f"{'backend':8} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9} {'CSV':>8}")
    for r in runs:
        rate = r.rows / r.seconds
        print(
            f"{r.backend:8} {r.rows:>9,} {r.seconds:>8.2f} {rate:>9,.0f} "
            f"{r.peak_mb:>6.1f} MB {r.csv_mb:>5.1f} MB"
        )
    ok = True
    for backend in dict.fromkeys(r.backend for r in runs):
        small, large = (r for r in runs if r.backend == backend)
        ratio = large.peak_mb / small.peak_mb
        met = ratio <= FLAT_LIMIT and all(r.written == r.rows for r in (small, large))
        ok &= met
        print(
            f"{backend}: peak RSS {large.rows:,} rows / {small.rows:,} rows = {ratio:.2f} "
            f"(target <= {FLAT_LIMIT}; +{large.peak_mb - small.peak_mb:.1f} MB for "
            f"{large.rows - small.rows:,} more rows): {'MET' if met else 'NOT MET'}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="the larger size (default 100k)")
    parser.add_argument("--quick", action="store_true", help="20k rows: a smoke run for the tests")
    parser.add_argument("--no-mariadb", action="store_true", help="SQLite only")
    parser.add_argument("--mariadb-url", help="use this server instead of starting one")
    args = parser.parse_args(argv)
    large = 20_000 if args.quick else args.rows
    sizes = (large // 10, large)

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as temp:
        work = Path(temp)
        for rows in sizes:
            url = make_sqlite(work, rows)
            runs.append(export("sqlite", url, "covers", rows, work / f"sqlite_{rows}.csv"))
        if not args.no_mariadb:
            runs += mariadb_runs(args, sizes, work)
    return 0 if report(runs) else 1


def mariadb_runs(args: argparse.Namespace, sizes: tuple[int, int], work: Path) -> list[Run]:
    def measure(url: str) -> list[Run]:
        runs = []
        for rows in sizes:
            table = make_mariadb(url, rows)
            runs.append(export("mariadb", url, table, rows, work / f"mariadb_{rows}.csv"))
        return runs

    if args.mariadb_url:
        return measure(args.mariadb_url)
    from tests.support.mariadb import MariaDBServer, MariaDBUnavailable

    try:
        server = MariaDBServer()
    except MariaDBUnavailable as reason:
        print(f"mariadb: skipped ({reason})")
        return []
    with server:
        return measure(server.url())


if __name__ == "__main__":
    sys.exit(main())
