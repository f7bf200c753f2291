"""Fetch cover images over HTTP(S): guarded, bounded in size and time, retried, pooled.

One `Downloader` per collage task holds one requests Session whose connections only reach
addresses the SSRF guard vetted (guarded_http). Redirects are followed here, one hop at a time,
so every hop goes through the same guard. Each attempt is watched (watchdog), its body read
within the limits (bounded_body), and failures become DownloadErrors (fetch_errors) that are
retried with full-jitter backoff while the URL's time budget allows.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from types import TracebackType
from urllib.parse import urljoin

import requests

from collage.engine import bounded_body, fetch_errors
from collage.engine.fetch_policy import DownloadError, FetchPolicy
from collage.engine.guarded_http import guarded_session
from collage.engine.time_budget import TimeBudget, out_of_time
from collage.engine.url_guard import AddressGuard, UrlRefused, check_url, scrub_url
from collage.engine.watchdog import Watchdog

__all__ = ["USER_AGENT", "DownloadError", "Downloader", "FetchPolicy"]

log = logging.getLogger(__name__)

USER_AGENT = "tiktok-cover-collage/0.1 (cover collage renderer; python-requests)"
_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "image/jpeg,image/png,image/webp,image/gif;q=0.9,*/*;q=0.1",
    "Accept-Encoding": "identity",
}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
        self._watchdog = Watchdog()
        self._session = guarded_session(self._guard, pool_size, _HEADERS)

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
        self._check(url, "")
        budget = TimeBudget(time.monotonic() + self.policy.total_timeout, self.deadline)
        attempts = 0
        while True:
            try:
                budget.left(url, "before fetching")
                attempts += 1
                data = self._attempt(url, budget)
            except DownloadError as exc:
                exc.attempts = attempts
                delay = self._retry_delay(exc, budget)
                log.info("retrying %s in %.2fs after: %s", scrub_url(url), delay, exc)
                time.sleep(delay)
                continue
            with self._lock:
                self._bytes += len(data)
            return data

    def _check(self, url: str, what: str) -> None:
        try:
            check_url(url, self._guard)
        except UrlRefused as exc:
            raise DownloadError(exc.code, f"{what}{exc}") from None

    def _retry_delay(self, exc: DownloadError, budget: TimeBudget) -> float:
        """How long to wait before retrying after `exc`; raises it when it is not retried."""
        if not exc.retryable or exc.attempts > self.policy.max_retries:
            raise exc
        delay = self._delay(exc.attempts, exc.retry_after)
        wake = time.monotonic() + delay
        if self.deadline is not None and wake >= self.deadline:
            raise DownloadError(
                "deadline",
                f"{exc}; the task deadline leaves no time to retry",
                status=exc.status,
                attempts=exc.attempts,
            ) from None
        if wake >= budget.limit:
            exc.args = (f"{exc}; the total timeout leaves no time to retry",)
            raise exc
        return delay

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After (capped) when the server gave one, else full-jitter backoff."""
        policy = self.policy
        if retry_after is not None:
            return min(retry_after, policy.retry_after_cap)
        return random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1)))

    def _attempt(self, url: str, budget: TimeBudget) -> bytes:
        left, code = budget.left(url, "before requesting")
        with self._watchdog.watch(left) as watch:
            try:
                return self._follow(url, budget)
            except DownloadError as exc:
                if not watch.fired or exc.code == code:
                    raise
        # The watch cut the socket: whatever error that caused, time ran out.
        raise out_of_time(code, "while fetching", url)

    def _follow(self, url: str, budget: TimeBudget) -> bytes:
        """One attempt: request, follow redirects hop by hop (each hop guarded), read the body."""
        current = url
        for hop in range(self.policy.max_redirects + 1):
            if hop:
                self._check(current, "redirect refused: ")
            current, body = self._hop(current, budget)
            if body is not None:
                return body
        raise DownloadError(
            "too_many_redirects",
            f"more than {self.policy.max_redirects} redirects from {scrub_url(url)}",
        )

    def _hop(self, url: str, budget: TimeBudget) -> tuple[str, bytes | None]:
        """(where a redirect points, None), or (url, the body) for a 2xx response."""
        left, _ = budget.left(url, "before requesting")
        policy = self.policy
        response = self._request(
            url, (min(policy.connect_timeout, left), min(policy.read_timeout, left))
        )
        with response:
            status = response.status_code
            location = response.headers.get("Location")
            if 200 <= status < 300:
                body = bounded_body.read_body(
                    response,
                    url,
                    max_bytes=policy.max_bytes,
                    read_timeout=policy.read_timeout,
                    budget=budget,
                )
                return url, body
            bounded_body.discard(response)
            if status in _REDIRECTS and location:
                return _redirect_target(url, location), None
            raise fetch_errors.status_error(status, url, response.headers.get("Retry-After"))

    def _request(self, url: str, timeout: tuple[float, float]) -> requests.Response:
        try:
            return self._session.get(url, stream=True, allow_redirects=False, timeout=timeout)
        except UrlRefused as exc:
            raise DownloadError(exc.code, str(exc)) from None
        except (requests.RequestException, ValueError) as exc:
            raise fetch_errors.request_error(exc, url) from exc


def _redirect_target(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError:
        raise DownloadError("invalid_url", f"bad redirect Location from {scrub_url(url)}") from None
