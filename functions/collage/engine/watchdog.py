"""Cut a download attempt's socket when its time is up, however slowly the server sends.

A socket timeout bounds each read, not their sum: a server dripping its headers (or a TLS
handshake) a byte at a time would outlive the total timeout and the deadline. Each attempt
runs inside a `Watch`; the connection it uses reports itself (`note_connection`) and the
`Watchdog` thread shuts that connection's socket down when the watch's time is up.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urllib3.connection import HTTPConnection


# The attempt running on this thread; a connection it uses reports itself to it.
_local = threading.local()


class Watch:
    """One attempt's time limit; when it fires, the connection it last used is cut."""

    def __init__(self, when: float) -> None:
        self.when = when
        # Its socket is read when the watch fires: during a TLS handshake urllib3 has already
        # stored the plain socket there, so a dripped handshake is cut too.
        self.connection: HTTPConnection | None = None
        self.fired = False
        self.done = False

    def __enter__(self) -> Watch:
        _local.watch = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done = True
        _local.watch = None

    def fire(self) -> None:
        self.fired = True
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            # socket.socket.shutdown, not SSLSocket.shutdown: wakes the blocked read without
            # touching the TLS object the other thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def note_connection(connection: HTTPConnection) -> None:
    """Called by a connection about to connect or send: the running watch cuts this one."""
    watch = getattr(_local, "watch", None)
    if watch is not None:
        watch.connection = connection


class Watchdog:
    """One thread per Downloader (started on demand, gone when idle) fires the watches; far
    cheaper than a Timer per attempt."""

    _IDLE_EXIT = 2.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._running = False
        self._closed = False

    def watch(self, seconds: float) -> Watch:
        """A watch that fires `seconds` from now unless its `with` block has ended."""
        watch = Watch(time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, (watch.when, next(self._order), watch))
            if not self._running and not self._closed:
                self._running = True
                threading.Thread(target=self._run, name="download-watchdog", daemon=True).start()
            self._cond.notify()
        return watch

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed and self._next():
                pass
            self._running = False

    def _next(self) -> bool:
        """Wait for the earliest watch and fire it when due; False once idle for a while."""
        while self._heap and self._heap[0][2].done:
            heapq.heappop(self._heap)
        if not self._heap:
            return self._cond.wait(self._IDLE_EXIT) or bool(self._heap)
        delay = self._heap[0][0] - time.monotonic()
        if delay > 0:
            self._cond.wait(delay)
        else:
            heapq.heappop(self._heap)[2].fire()
        return True
