"""The cover server's programmable faults: what a path answers when it is made to misbehave.

Each fault is a function `fault_KIND(reply, data, **params)`: `reply` writes on the request's
connection and counts the body bytes sent, `data` is the file served at the path (None if
there is none; faults that need a body then make one of the `size` asked). The parameters are
those `CoverServer.fault` documents. Every fault is bounded in time and stops when the server
does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

_BLOCK = 64 * 1024
_MAX_FAULT_SECONDS = 60.0  # no single slow response lasts longer than this
# Starts like a JPEG so magic-byte checks pass; fault bodies need no more than that.
_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def fake_jpeg(size: int) -> bytes:
    """`size` bytes that start with JPEG magic (enough for transfer tests, not for decoding)."""
    return (_JPEG_HEAD + bytes(max(0, size - len(_JPEG_HEAD))))[:size]


@dataclass
class Fault:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    remaining: int | None = None  # None = every request; else this many, then serve normally

    def take(self) -> bool:
        """Whether this request gets the fault (one fewer left when it is counted)."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def redirect_chain(path: str, params: dict[str, Any], times: int | None) -> dict[str, Fault]:
    """The faults of a redirect with `hops` hops: path -> path.hop1 -> ... -> `to`."""
    hops = int(params.pop("hops", 1))
    if hops < 1 or "to" not in params:
        raise ValueError("redirect needs hops >= 1 and to=path or URL")
    chain = [path] + [f"{path}.hop{i}" for i in range(1, hops)]
    targets = [*chain[1:], params["to"]]
    return {
        source: Fault("redirect", {**params, "to": target}, times)
        for source, target in zip(chain, targets, strict=True)
    }


@dataclass
class Reply:
    """One response being written: the handler's connection, and what the server keeps of it."""

    handler: BaseHTTPRequestHandler
    path: str
    body: bool  # False for HEAD
    count: Callable[[str, int], None]  # body bytes sent, per path
    stopping: threading.Event
    base_url: str

    def send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """A whole response with its Content-Length (the body left out for HEAD)."""
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if self.body:
            self.write(payload)

    def write(self, data: bytes) -> None:
        """Body bytes, counted."""
        self.handler.wfile.write(data)
        self.count(self.path, len(data))

    def hang_up(self) -> None:
        self.handler.close_connection = True


def fault_status(
    reply: Reply, data: bytes | None, *, code: int = 404, retry_after: float | None = None
) -> None:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    reply.send(int(code), f"status {code}\n".encode(), "text/plain", headers)


def fault_reset(reply: Reply, data: bytes | None) -> None:
    # SO_LINGER 0: close() sends a TCP RST instead of a clean FIN.
    linger = struct.pack("ii", 1, 0)
    reply.handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    reply.hang_up()


def fault_html(reply: Reply, data: bytes | None) -> None:
    page = b"<!doctype html><html><head><title>Login</title></head><body>nope</body></html>\n"
    reply.send(200, page, "text/html; charset=utf-8")


def fault_truncate(
    reply: Reply, data: bytes | None, *, send: int | None = None, size: int = 4096
) -> None:
    """Declare the whole body's length, send part of it (half by default), hang up."""
    payload = data if data is not None else fake_jpeg(size)
    send = len(payload) // 2 if send is None else min(int(send), len(payload))
    handler = reply.handler
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if reply.body:
        reply.write(payload[:send])
    reply.hang_up()


def fault_slow(
    reply: Reply,
    data: bytes | None,
    *,
    bytes_per_second: float = 20,
    size: int = 1024,
    headers: bool = False,
) -> None:
    """Drip the body (or, with headers=True, the whole response from its status line)."""
    payload = data if data is not None else fake_jpeg(size)
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    if not headers:
        reply.handler.wfile.write(head)
        head = b""
    reply.hang_up()
    with contextlib.suppress(OSError):  # the client gave up
        _drip(reply, head, payload if reply.body else b"", bytes_per_second)


def _drip(reply: Reply, head: bytes, payload: bytes, bytes_per_second: float) -> None:
    """Write head + payload a piece every tick, for at most _MAX_FAULT_SECONDS; only the
    payload's bytes count as body bytes."""
    stream = head + payload
    tick = 0.05
    piece = max(1, int(bytes_per_second * tick))
    budget = _MAX_FAULT_SECONDS / tick
    for offset in range(0, len(stream), piece):
        if budget <= 0 or (offset and reply.stopping.wait(tick)):
            break
        budget -= 1
        reply.handler.wfile.write(stream[offset : offset + piece])
        reply.count(reply.path, max(0, min(offset + piece, len(stream)) - max(offset, len(head))))


def fault_huge(
    reply: Reply, data: bytes | None, *, size: int = 64 * 1024 * 1024, declare_length: bool = True
) -> None:
    """A body of `size` bytes (JPEG magic, then zeros), declared or chunked."""
    handler = reply.handler
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    if declare_length:
        handler.send_header("Content-Length", str(size))
    else:
        handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    reply.hang_up()
    if not reply.body:
        return
    with contextlib.suppress(OSError):  # the client gave up, as it should
        _flood(reply, size, chunked=not declare_length)


def _flood(reply: Reply, size: int, *, chunked: bool) -> None:
    """Write `size` body bytes in blocks until done or the server stops."""
    block = fake_jpeg(_BLOCK)
    zeros = bytes(_BLOCK)
    sent = 0
    while sent < size and not reply.stopping.is_set():
        part = (block if sent == 0 else zeros)[: size - sent]
        frame = b"%x\r\n%b\r\n" % (len(part), part) if chunked else part
        reply.handler.wfile.write(frame)
        sent += len(part)
        reply.count(reply.path, len(part))
    if chunked and sent >= size:
        reply.handler.wfile.write(b"0\r\n\r\n")


def fault_redirect(reply: Reply, data: bytes | None, *, to: str, code: int = 302) -> None:
    location = reply.base_url + to if to.startswith("/") else to
    reply.send(int(code), b"", "text/plain", {"Location": location})


FAULTS: dict[str, Callable[..., None]] = {
    "status": fault_status,
    "reset": fault_reset,
    "slow": fault_slow,
    "truncate": fault_truncate,
    "html": fault_html,
    "huge": fault_huge,
    "redirect": fault_redirect,
}
FAULT_KINDS = tuple(FAULTS)
