"""Read a response body within the size limit and the time left, checking it is an image.

The body is streamed in chunks: one larger than `max_bytes` is cut off as soon as it passes
the limit (or before a byte is read, when its Content-Length says so), and one whose first
bytes are not a supported image is dropped after its first chunk.
"""

from __future__ import annotations

import requests
import urllib3
from urllib3.exceptions import ReadTimeoutError

from collage.engine import fetch_errors, formats
from collage.engine.fetch_policy import DownloadError
from collage.engine.time_budget import TimeBudget, out_of_time
from collage.engine.url_guard import scrub_url

_CHUNK = 256 * 1024
_DRAIN_LIMIT = 64 * 1024  # a small error/redirect body is read so its connection can be reused


def read_body(
    response: requests.Response,
    url: str,
    *,
    max_bytes: int,
    read_timeout: float,
    budget: TimeBudget,
) -> bytes:
    """The whole body of a 2xx `response` to `url`; raises DownloadError."""
    declared = content_length(response.headers.get("Content-Length"))
    if declared is not None and declared > max_bytes:
        raise DownloadError(
            "too_large", f"{scrub_url(url)} declares {declared} bytes (limit {max_bytes})"
        )
    return _BodyReader(response, url, max_bytes, read_timeout, budget, declared).read()


class _BodyReader:
    """One body on its way in: bounded, and sniffed once its first bytes are in."""

    def __init__(
        self,
        response: requests.Response,
        url: str,
        max_bytes: int,
        read_timeout: float,
        budget: TimeBudget,
        declared: int | None,  # the Content-Length, when there is a valid one
    ) -> None:
        self.response = response
        self.url = url
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.budget = budget
        self.declared = declared
        self.chunks: list[bytes] = []
        self.received = 0
        self.sniffed = False

    def read(self) -> bytes:
        while chunk := self._next_chunk():
            self._add(chunk)
        if self.declared is not None and self.received < self.declared:
            raise fetch_errors.truncated(self.url, self.received, self.declared)
        data = b"".join(self.chunks)
        if not self.sniffed:
            check_image(data, self.response, self.url)
        return data

    def _add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise DownloadError(
                "too_large",
                f"{scrub_url(self.url)} is larger than the limit of {self.max_bytes} bytes",
            )
        if not self.sniffed and self.received >= formats.SNIFF_BYTES:
            check_image(b"".join(self.chunks)[: formats.SNIFF_BYTES], self.response, self.url)
            self.sniffed = True

    def _next_chunk(self) -> bytes:
        """The next bytes (b'' at the end), within the read timeout and the time left."""
        what = f"after {self.received} bytes of"
        left, code = self.budget.left(self.url, what)
        raw = self.response.raw
        _tighten_read_timeout(raw, min(self.read_timeout, left))
        try:
            return bytes(raw.read1(_CHUNK))
        except ReadTimeoutError:
            if left < self.read_timeout:  # the socket wait was cut to the time left
                raise out_of_time(code, what, self.url) from None
            raise DownloadError(
                "timeout", f"read timed out {what} {scrub_url(self.url)}", retryable=True
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise fetch_errors.broken_body(exc, self.url, self.received, self.declared) from exc


def check_image(head: bytes, response: requests.Response, url: str) -> None:
    """Refuse a body whose first bytes are no image, or one in a format we do not decode."""
    kind = formats.sniff(head)
    if kind is None:
        declared = response.headers.get("Content-Type", "unknown type").split(";")[0].strip()
        served = declared if head else "an empty body"
        raise DownloadError("not_an_image", f"{scrub_url(url)} is not an image (served {served})")
    if kind not in formats.SUPPORTED_FORMATS:
        code, reason = formats.refusal(kind)
        raise DownloadError(code, f"{scrub_url(url)}: {reason}")


def _tighten_read_timeout(raw: urllib3.HTTPResponse, seconds: float) -> None:
    # Each socket read waits at most the time this URL has left, so a silent server is cut
    # off at the total timeout / deadline rather than a full read timeout later.
    sock = getattr(raw.connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def discard(response: requests.Response) -> None:
    """Read a small unwanted body so its connection goes back to the pool; else drop it."""
    length = content_length(response.headers.get("Content-Length"))
    if length is None or length > _DRAIN_LIMIT:
        response.raw.close()
        return
    try:
        response.raw.read(length, decode_content=False)
        response.raw.release_conn()
    except (urllib3.exceptions.HTTPError, OSError):
        response.raw.close()


def content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
