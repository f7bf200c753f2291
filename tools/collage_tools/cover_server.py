"""A loopback HTTP/1.1 cover server with programmable faults, for tests, the demo and benchmarks.

It binds 127.0.0.1 only, keeps connections alive (so connection reuse can be measured through
`connections`), counts requests per path in `hits`, and can misbehave per path: error statuses,
resets, slow drips, truncated or huge bodies, HTML instead of an image, redirect chains.
Everything it does is bounded in time, and `stop()` closes open connections so nothing hangs.
The faults themselves are in cover_faults.py.
"""

from __future__ import annotations

import collections
import contextlib
import mimetypes
import socket
import socketserver
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from collage_tools.cover_faults import FAULT_KINDS, FAULTS, Fault, Reply, fake_jpeg, redirect_chain

__all__ = ["FAULT_KINDS", "CoverServer", "fake_jpeg"]

_IDLE_TIMEOUT = 10.0  # an idle keep-alive connection (or a stuck client) is dropped after this


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    owner: CoverServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is what the fault tests provoke: not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = _IDLE_TIMEOUT
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per response on a reused connection).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._closed(self.connection)

    def do_GET(self) -> None:
        self.server.owner._serve(self, body=True)

    def do_HEAD(self) -> None:
        self.server.owner._serve(self, body=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CoverServer:
    """Threaded HTTP/1.1 server with keep-alive on 127.0.0.1; start()/stop() or `with`."""

    def __init__(self, *, latency: float = 0.0, port: int = 0) -> None:
        self.latency = latency
        self._port = port
        self._files: dict[str, tuple[bytes, str]] = {}
        self._faults: dict[str, Fault] = {}
        self._prefixes: dict[str, tuple[list[bytes], str]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.hits: collections.Counter[str] = collections.Counter()
        self.bytes_sent: collections.Counter[str] = collections.Counter()  # body bytes per path
        self.headers_seen: dict[str, dict[str, str]] = {}  # last request's headers per path
        self.connections = 0
        self.base_url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CoverServer:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:  # wake handler threads blocked on idle keep-alive reads
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CoverServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- content -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        if not self.base_url:
            raise RuntimeError("start() the server first")
        return self.base_url + _norm(path)

    def add(self, path: str, data: bytes, content_type: str = "image/jpeg") -> str:
        with self._lock:
            self._files[_norm(path)] = (bytes(data), content_type)
        return self.url(path)

    def add_directory(self, directory: Path, prefix: str = "/") -> list[str]:
        """Serve every file under `directory` at `prefix` + its relative path; URLs sorted."""
        root = Path(directory)
        base = "/" + prefix.strip("/")
        urls = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            rel = file.relative_to(root).as_posix()
            urls.append(self.add(f"{base.rstrip('/')}/{rel}", file.read_bytes(), kind))
        return urls

    def fault(self, path: str, kind: str, **params: Any) -> str:
        """Make `path` misbehave; `times=N` limits it to the first N requests. Returns the URL.

        status: code=404, retry_after=None | reset | slow: bytes_per_second=20, size=1024,
        headers=False |
        truncate: send=None (bytes actually sent) | html | huge: size=64 MiB,
        declare_length=True | redirect: hops=1, to=path-or-URL, code=302
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        path = _norm(path)
        times = params.pop("times", None)
        with self._lock:
            if kind == "redirect":
                self._faults.update(redirect_chain(path, params, times))
            else:
                self._faults[path] = Fault(kind, params, times)
        return self.url(path)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- serving (runs on handler threads) -------------------------------------------------------

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _serve(self, handler: _Handler, *, body: bool) -> None:
        path = urlsplit(handler.path).path
        fault, file = self._request(path, handler)
        if self.latency > 0 and self._stopping.wait(self.latency):
            handler.close_connection = True
            return
        reply = Reply(handler, path, body, self._count, self._stopping, self.base_url)
        if fault is not None:
            FAULTS[fault.kind](reply, file[0] if file else None, **fault.params)
        elif file is None:
            reply.send(404, b"not found\n", "text/plain")
        else:
            reply.send(200, file[0], file[1])

    def _request(
        self, path: str, handler: _Handler
    ) -> tuple[Fault | None, tuple[bytes, str] | None]:
        """Count the request; the fault it gets (if any) and the file at its path (if any)."""
        with self._lock:
            self.hits[path] += 1
            self.headers_seen[path] = dict(handler.headers.items())
            fault = self._faults.get(path)
            if fault is not None and not fault.take():
                fault = None
            return fault, self._files.get(path) or self._from_prefix(path)

    def add_prefix(self, prefix: str, images: list[bytes], content_type: str = "image/jpeg") -> str:
        """Serve every path under `prefix` (a benchmark's millions of distinct URLs): the
        image a path gets is chosen by its hash among `images`. Returns the prefix's URL."""
        with self._lock:
            self._prefixes[_norm(prefix).rstrip("/") + "/"] = (images, content_type)
        return self.url(prefix)

    def _from_prefix(self, path: str) -> tuple[bytes, str] | None:
        for prefix, (images, content_type) in self._prefixes.items():
            if path.startswith(prefix):
                digest = zlib.crc32(path.encode())
                return images[digest % len(images)], content_type
        return None

    def _count(self, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_sent[path] += sent


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")
