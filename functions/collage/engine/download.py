"""Fetch cover images over HTTP(S): guarded, bounded in size and time, retried, pooled.

One `Downloader` per collage task holds one `requests.Session` whose connections are made by
`_GuardedHTTPConnection`: it resolves the host once, checks every address (url_guard) and
connects to the checked address, while TLS still verifies the certificate for the host name.
Redirects are followed here, one hop at a time, so every hop goes through the same guard.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import random
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util import connection as urllib3_connection

from collage.engine import formats
from collage.engine.fetch_policy import DownloadError, FetchPolicy
from collage.engine.url_guard import (
    AddressGuard,
    UrlRefused,
    check_url,
    scrub_text,
    scrub_url,
)

log = logging.getLogger(__name__)

USER_AGENT = "tiktok-cover-collage/0.1 (cover collage renderer; python-requests)"
_ACCEPT = "image/jpeg,image/png,image/webp,image/gif;q=0.9,*/*;q=0.1"
_CHUNK = 256 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DRAIN_LIMIT = 64 * 1024  # a small error/redirect body is read so its connection can be reused


# --- connections that only ever reach a vetted address -------------------------------------


# The attempt running on this thread (see _Watch); connections report their socket to it.
_local = threading.local()


class _Watch:
    """One attempt's time limit; the watchdog cuts the socket it last used when time is up."""

    def __init__(self, when: float) -> None:
        self.when = when
        self.sock: socket.socket | None = None
        self.fired = False
        self.done = False

    def __enter__(self) -> _Watch:
        _local.watch = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done = True
        _local.watch = None

    def fire(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            # socket.socket.shutdown, not SSLSocket.shutdown: wakes the blocked read without
            # touching the TLS object the other thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Enforces attempt time limits that socket timeouts cannot.

    A socket timeout bounds each read, not their sum: a server dripping its headers (or a TLS
    handshake) a byte at a time would outlive the total timeout and the deadline. One thread
    per Downloader (started on demand, gone when idle) is far cheaper than a Timer per attempt.
    """

    _IDLE_EXIT = 2.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._running = False
        self._closed = False

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch(time.monotonic() + seconds)
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
            while not self._closed:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    if not self._cond.wait(self._IDLE_EXIT) and not self._heap:
                        break
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)[2].fire()
            self._running = False


def _watch_socket(sock: socket.socket | None) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None and sock is not None:
        watch.sock = sock


def _guarded_new_conn(conn: HTTPConnection, guard: AddressGuard) -> socket.socket:
    addresses = guard.vet(conn._dns_host, conn.port)  # raises UrlRefused before any socket
    last_error: OSError | None = None
    for address in addresses:
        try:
            sock = urllib3_connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"connection to {conn.host} timed out (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            last_error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        _watch_socket(sock)
        return sock
    raise NewConnectionError(conn, f"failed to connect: {last_error}") from last_error


class _Guarded(HTTPConnection):
    """Mixed into urllib3's connections: every new socket goes through the address guard.

    It subclasses HTTPConnection so that its methods are checked against what they extend; in
    _GuardedHTTPSConnection the method order is still this mixin, HTTPSConnection, then
    HTTPConnection."""

    def __init__(self, *args: Any, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self._guard)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_socket(self.sock)  # a reused connection: the watch must cut this one
        super().request(*args, **kwargs)


class _GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    """The socket goes to the vetted IP; TLS still sends SNI and verifies for `self.host`."""


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedPoolManager(urllib3.PoolManager):
    def __init__(self, *args, guard: AddressGuard, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.conn_kw["guard"] = self._guard
        return pool


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: AddressGuard, **kwargs) -> None:
        self._guard = guard  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _GuardedPoolManager(
            num_pools=connections, maxsize=maxsize, block=block, guard=self._guard, **pool_kwargs
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # A proxy would make the connection (and the address check) somebody else's.
        raise UrlRefused("address_blocked", "proxies are not used for cover downloads")


class _NoCookies(DefaultCookiePolicy):
    # Covers need no cookies, and a jar shared by all threads and hosts is state we don't want.
    def set_ok(self, cookie, request) -> bool:
        return False

    def return_ok(self, cookie, request) -> bool:
        return False


# --- the downloader ---------------------------------------------------------------------------


class Downloader:
    """Fetches covers for one collage task; thread-safe; use as a context manager or close()."""

    def __init__(
        self, policy: FetchPolicy, *, pool_size: int = 8, deadline: float | None = None
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.policy = policy
        self.deadline = deadline
        self._guard = policy.address_guard or AddressGuard()
        self._lock = threading.Lock()
        self._bytes = 0
        self._watchdog = _Watchdog()
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        session.cookies.set_policy(_NoCookies())
        session.headers.update(
            {"User-Agent": USER_AGENT, "Accept": _ACCEPT, "Accept-Encoding": "identity"}
        )
        adapter = _GuardedAdapter(
            self._guard, pool_connections=max(pool_size, 4), pool_maxsize=pool_size, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    @property
    def bytes_downloaded(self) -> int:
        """Bytes of covers delivered by `fetch` so far (failed attempts are not counted)."""
        with self._lock:
            return self._bytes

    def close(self) -> None:
        self._watchdog.close()
        self._session.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, url: str) -> bytes:
        """The image bytes at `url` (magic bytes checked); raises DownloadError."""
        try:
            check_url(url, self._guard)
        except UrlRefused as exc:
            raise DownloadError(exc.code, str(exc)) from None
        policy = self.policy
        started = time.monotonic()
        limit = started + policy.total_timeout
        attempts = 0
        while True:
            try:
                self._time_left(limit, url, "before fetching")
                attempts += 1
                data = self._attempt(url, limit)
            except DownloadError as exc:
                exc.attempts = attempts
                if not exc.retryable or attempts > policy.max_retries:
                    raise
                delay = self._delay(attempts, exc.retry_after)
                wake = time.monotonic() + delay
                if self.deadline is not None and wake >= self.deadline:
                    raise DownloadError(
                        "deadline",
                        f"{exc}; the task deadline leaves no time to retry",
                        status=exc.status,
                        attempts=attempts,
                    ) from None
                if wake >= limit:
                    exc.args = (f"{exc}; the total timeout leaves no time to retry",)
                    raise
                log.info("retrying %s in %.2fs after: %s", scrub_url(url), delay, exc)
                time.sleep(delay)
                continue
            with self._lock:
                self._bytes += len(data)
            return data

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        policy = self.policy
        if retry_after is not None:
            return min(retry_after, policy.retry_after_cap)
        return random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1)))

    def _time_left(self, limit: float, url: str, what: str) -> tuple[float, str]:
        """Seconds left for this attempt and the code to use when they run out."""
        now = time.monotonic()
        if self.deadline is not None and self.deadline <= limit:
            left, code = self.deadline - now, "deadline"
        else:
            left, code = limit - now, "timeout"
        if left <= 0:
            reason = "task deadline reached" if code == "deadline" else "total timeout reached"
            raise DownloadError(code, f"{reason} {what} {scrub_url(url)}")
        return left, code

    def _attempt(self, url: str, limit: float) -> bytes:
        left, code = self._time_left(limit, url, "before requesting")
        with self._watchdog.watch(left) as watch:
            try:
                return self._follow(url, limit)
            except DownloadError as exc:
                if not watch.fired or exc.code == code:
                    raise
        reason = "task deadline" if code == "deadline" else "total timeout"
        raise DownloadError(code, f"{reason} reached while fetching {scrub_url(url)}")

    def _follow(self, url: str, limit: float) -> bytes:
        """One attempt: request, follow redirects hop by hop (each hop guarded), read the body."""
        policy = self.policy
        current = url
        for hop in range(policy.max_redirects + 1):
            if hop:
                try:
                    check_url(current, self._guard)
                except UrlRefused as exc:
                    raise DownloadError(exc.code, f"redirect refused: {exc}") from None
            left, _ = self._time_left(limit, current, "before requesting")
            response = self._request(
                current, (min(policy.connect_timeout, left), min(policy.read_timeout, left))
            )
            try:
                status = response.status_code
                location = response.headers.get("Location")
                if status in _REDIRECTS and location:
                    _discard(response)
                    try:
                        current = urljoin(current, location)
                    except ValueError:
                        raise DownloadError(
                            "invalid_url", f"bad redirect Location from {scrub_url(current)}"
                        ) from None
                    continue
                if 200 <= status < 300:
                    return self._read_body(response, current, limit)
                _discard(response)
                raise DownloadError(
                    "http_status",
                    f"HTTP {status} from {scrub_url(current)}",
                    status=status,
                    retryable=status in (408, 429) or 500 <= status <= 599,
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                )
            finally:
                response.close()
        raise DownloadError(
            "too_many_redirects",
            f"more than {policy.max_redirects} redirects from {scrub_url(url)}",
        )

    def _request(self, url: str, timeout: tuple[float, float]) -> requests.Response:
        shown = scrub_url(url)
        try:
            return self._session.get(url, stream=True, allow_redirects=False, timeout=timeout)
        except UrlRefused as exc:
            raise DownloadError(exc.code, str(exc)) from None
        except requests.Timeout as exc:
            raise DownloadError("timeout", f"timed out on {shown}", retryable=True) from exc
        except requests.exceptions.SSLError as exc:  # a bad certificate will not get better
            raise DownloadError("connect_failed", f"TLS failed for {shown}: {_cause(exc)}") from exc
        except requests.ConnectionError as exc:
            raise DownloadError(
                "connect_failed", f"connection failed to {shown}: {_cause(exc)}", retryable=True
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise DownloadError("invalid_url", f"cannot request {shown}: {_cause(exc)}") from exc

    def _read_chunk(
        self, raw: Any, url: str, limit: float, received: int, declared: int | None
    ) -> bytes:
        """The next bytes of the body, within the read timeout and the time left."""
        shown = scrub_url(url)
        left, code = self._time_left(limit, url, f"after {received} bytes of")
        _tighten_read_timeout(raw, min(self.policy.read_timeout, left))
        try:
            return bytes(raw.read1(_CHUNK))
        except ReadTimeoutError:
            if left < self.policy.read_timeout:  # the socket wait was cut to the time left
                reason = "task deadline" if code == "deadline" else "total timeout"
                raise DownloadError(
                    code, f"{reason} reached after {received} bytes of {shown}"
                ) from None
            raise DownloadError(
                "timeout", f"read timed out after {received} bytes of {shown}", retryable=True
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if declared is not None or received:
                raise DownloadError(
                    "truncated",
                    f"{shown} ended after {received} of {declared or '?'} bytes",
                    retryable=True,
                ) from exc
            raise DownloadError(
                "connect_failed", f"connection broken on {shown}: {_cause(exc)}", retryable=True
            ) from exc

    def _read_body(self, response: requests.Response, url: str, limit: float) -> bytes:
        policy = self.policy
        shown = scrub_url(url)
        declared = _content_length(response.headers.get("Content-Length"))
        if declared is not None and declared > policy.max_bytes:
            raise DownloadError(
                "too_large", f"{shown} declares {declared} bytes (limit {policy.max_bytes})"
            )
        raw = response.raw
        chunks: list[bytes] = []
        received = 0
        sniffed = False
        while True:
            chunk = self._read_chunk(raw, url, limit, received, declared)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
            if received > policy.max_bytes:
                raise DownloadError(
                    "too_large", f"{shown} is larger than the limit of {policy.max_bytes} bytes"
                )
            if not sniffed and received >= formats.SNIFF_BYTES:
                _check_image(b"".join(chunks)[: formats.SNIFF_BYTES], response, shown)
                sniffed = True
        if declared is not None and received < declared:
            raise DownloadError(
                "truncated", f"{shown} ended after {received} of {declared} bytes", retryable=True
            )
        body = b"".join(chunks)
        if not sniffed:
            _check_image(body, response, shown)
        return body


def _check_image(head: bytes, response: requests.Response, shown: str) -> None:
    kind = formats.sniff(head)
    if kind is None:
        declared = response.headers.get("Content-Type", "unknown type").split(";")[0].strip()
        served = declared if head else "an empty body"
        raise DownloadError("not_an_image", f"{shown} is not an image (served {served})")
    if kind not in formats.SUPPORTED_FORMATS:
        code, reason = formats.refusal(kind)
        raise DownloadError(code, f"{shown}: {reason}")


def _tighten_read_timeout(raw: urllib3.HTTPResponse, seconds: float) -> None:
    # Each socket read waits at most the time this URL has left, so a silent server is cut
    # off at the total timeout / deadline rather than a full read timeout later.
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _discard(response: requests.Response) -> None:
    """Read a small unwanted body so its connection goes back to the pool; else drop it."""
    length = _content_length(response.headers.get("Content-Length"))
    if length is None or length > _DRAIN_LIMIT:
        response.raw.close()
        return
    try:
        response.raw.read(length, decode_content=False)
        response.raw.release_conn()
    except (urllib3.exceptions.HTTPError, OSError):
        response.raw.close()


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _cause(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error, without credentials."""
    seen = exc
    while True:
        inner = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if inner is None and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        if inner is None or inner is seen or not isinstance(inner, BaseException):
            break
        seen = inner
    text = scrub_text(str(seen)) or type(seen).__name__
    return text if len(text) <= 200 else text[:199] + "…"
