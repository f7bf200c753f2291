"""A throwaway MariaDB server on loopback for tests and benchmarks.

`MariaDBServer` initialises a data directory in a temp dir (mariadb-install-db), starts
mariadbd bound to 127.0.0.1 on a free port with its socket in that dir, creates a database
and a user with a random password (real authentication, so wrong-password tests are real),
and stops the server and removes everything on exit. The server is tied to this process
(PR_SET_PDEATHSIG), so a killed test run does not leave it behind.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class MariaDBUnavailable(RuntimeError):
    """The server binaries are not installed (a skip outside CI, a failure in CI)."""


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return found
    return None


def binaries() -> tuple[str, str]:
    """(server, install-db) paths, or MariaDBUnavailable naming what is missing."""
    server, install = _which(SERVER_NAMES), _which(INSTALL_NAMES)
    if not server or not install:
        missing = [n for n, p in ((SERVER_NAMES[0], server), (INSTALL_NAMES[0], install)) if not p]
        raise MariaDBUnavailable(
            f"{' and '.join(missing)} not found: install mariadb-server "
            "(scripts/setup-mariadb.sh or `make mariadb`)"
        )
    return server, install


def server_or_skip() -> MariaDBServer:
    """A (not yet started) server for a pytest fixture: skip when it is not installed, but fail
    when CI=true, where a missing server must never pass silently."""
    import pytest

    try:
        return MariaDBServer()
    except MariaDBUnavailable as reason:
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true but the MariaDB server is missing: {reason}", pytrace=False)
        pytest.skip(f"MariaDB server not installed: {reason}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: SIGKILL it when the process that started it dies.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MariaDBServer:
    """Context manager: a running server; `url(...)` builds SQLAlchemy URLs for its user."""

    database = "covers"
    user = "collage"

    def __init__(self) -> None:
        self.server_bin, self.install_bin = binaries()
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None

    def url(self, password: str | None = None, database: str | None = None) -> str:
        secret = self.password if password is None else password
        name = database or self.database
        return f"mysql+pymysql://{self.user}:{secret}@127.0.0.1:{self.port}/{name}?charset=utf8mb4"

    def __enter__(self) -> MariaDBServer:
        self.root = Path(tempfile.mkdtemp(prefix="collage-mariadb-"))
        try:
            self._install()
            for _attempt in range(3):  # the free port may be taken between probe and bind
                if self._start():
                    return self
            raise RuntimeError(f"mariadbd did not start:\n{self._log_tail()}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _as_root_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _install(self) -> None:
        assert self.root is not None
        command = [
            self.install_bin,
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            # root without a password, reachable only through the socket in our 0700 temp dir
            # (it creates the test user, then is dropped from TCP hosts)
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *self._as_root_args(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{(done.stdout + done.stderr)[-2000:]}")

    def _root_connection(self):  # -> pymysql.Connection | None
        import pymysql

        assert self.root is not None
        try:
            return pymysql.connect(
                unix_socket=str(self.root / "mysqld.sock"),
                user="root",
                password="",
                connect_timeout=2,
            )
        except pymysql.err.OperationalError:
            return None  # not listening yet

    def _create_user(self, connection) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost'"
            )
            cursor.execute(
                f"CREATE DATABASE {self.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            cursor.execute(f"CREATE USER '{self.user}'@'%%' IDENTIFIED BY %s", (self.password,))
            cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%'")
            cursor.execute("FLUSH PRIVILEGES")

    def _start(self) -> bool:
        assert self.root is not None
        self.port = _free_port()
        command = [
            self.server_bin,
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.root / 'error.log'}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",  # a throwaway server: speed over durability
            "--skip-log-bin",
            *self._as_root_args(),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # single-threaded here; Linux only
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            connection = self._root_connection()
            if connection is not None:
                try:
                    self._create_user(connection)
                finally:
                    connection.close()
                return True
            time.sleep(0.1)
        self._stop()
        raise RuntimeError(f"mariadbd did not accept connections in {START_TIMEOUT:.0f}s")

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: mariadbd shuts down cleanly
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _log_tail(self) -> str:
        log = self.root / "error.log" if self.root else None
        if log is None or not log.exists():
            return "(no error log)"
        return log.read_text(errors="replace")[-2000:]
