"""What went wrong with a download, as a DownloadError with a stable code and a clean message.

requests and urllib3 raise layered exceptions ("Max retries exceeded ... caused by ...") whose
text may hold a URL's credentials; reports get the code, the URL without them and the innermost
reason. Whether a failure is worth retrying is decided here too (`retryable`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from collage.engine.fetch_policy import DownloadError
from collage.engine.url_guard import scrub_text, scrub_url

_CAUSE_LIMIT = 200


def request_error(exc: requests.RequestException | ValueError, url: str) -> DownloadError:
    """A request that got no response: timed out, TLS refused, no connection, or unsendable."""
    shown = scrub_url(url)
    if isinstance(exc, requests.Timeout):
        return DownloadError("timeout", f"timed out on {shown}", retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):  # a bad certificate will not get better
        return DownloadError("connect_failed", f"TLS failed for {shown}: {cause(exc)}")
    if isinstance(exc, requests.ConnectionError):
        return DownloadError(
            "connect_failed", f"connection failed to {shown}: {cause(exc)}", retryable=True
        )
    return DownloadError("invalid_url", f"cannot request {shown}: {cause(exc)}")


def status_error(status: int, url: str, retry_after_header: str | None) -> DownloadError:
    """A response that is neither a success nor a redirect; 408, 429 and 5xx are retried."""
    return DownloadError(
        "http_status",
        f"HTTP {status} from {scrub_url(url)}",
        status=status,
        retryable=status in (408, 429) or 500 <= status <= 599,
        retry_after=retry_after(retry_after_header),
    )


def broken_body(exc: BaseException, url: str, received: int, declared: int | None) -> DownloadError:
    """The connection failed while the body was read."""
    if declared is not None or received:
        return truncated(url, received, declared)
    return DownloadError(
        "connect_failed", f"connection broken on {scrub_url(url)}: {cause(exc)}", retryable=True
    )


def truncated(url: str, received: int, declared: int | None) -> DownloadError:
    return DownloadError(
        "truncated",
        f"{scrub_url(url)} ended after {received} of {declared or '?'} bytes",
        retryable=True,
    )


def retry_after(value: str | None) -> float | None:
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


def cause(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error, without credentials."""
    seen = exc
    while (inner := _inner(seen)) is not None:
        seen = inner
    text = scrub_text(str(seen)) or type(seen).__name__
    return text if len(text) <= _CAUSE_LIMIT else text[: _CAUSE_LIMIT - 1] + "…"


def _inner(exc: BaseException) -> BaseException | None:
    """The exception `exc` wraps: urllib3's `reason`, the chained one, or requests' first arg."""
    inner = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    if inner is None and exc.args and isinstance(exc.args[0], BaseException):
        inner = exc.args[0]
    if inner is exc or not isinstance(inner, BaseException):
        return None
    return inner
