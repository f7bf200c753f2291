"""HTTPS through the guarded connection: the socket goes to the vetted IP, yet TLS still sends
SNI for the host name and verifies the certificate against it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collage.engine.download import Downloader, DownloadError, FetchPolicy
from collage_tools.cover_server import fake_jpeg
from collage_tools.loopback import local_guard
from tests.support.faults import NetworkSpy, make_tls_files, tls_server


def test_https_verifies_the_host_name_on_the_vetted_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = NetworkSpy(monkeypatch, {"covers.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    ca, cert, key = make_tls_files(tmp_path, "covers.test")
    body = fake_jpeg(3000)
    with (
        tls_server(cert, key, body) as (port, sni),
        Downloader(
            FetchPolicy(address_guard=local_guard(True), max_retries=2, total_timeout=5)
        ) as downloader,
    ):
        downloader._session.verify = str(ca)  # trust the throwaway CA for this test only
        assert downloader.fetch(f"https://covers.test:{port}/a.jpg") == body
        assert sni == ["covers.test"]
        # Same address, wrong name: the certificate does not match, nothing is returned.
        with pytest.raises(DownloadError) as info:
            downloader.fetch(f"https://impostor.test:{port}/a.jpg")
        assert info.value.code == "connect_failed" and info.value.attempts == 1  # not retried
        assert "certificate" in str(info.value).lower()
    # One lookup per host through our resolver, then connections to the literal address only.
    assert net.resolved == ["covers.test", "impostor.test"]
    assert set(net.connects) == {"127.0.0.1"}
    assert "covers.test" not in net.lookups and "impostor.test" not in net.lookups


@contextmanager
def dripping_tls_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers a TLS ClientHello with the header of a large
    handshake record, then one byte of it every 50 ms: no single read ever times out."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x3f\xff")  # a 16 KB handshake record follows
                for _ in range(100):  # 5 s at most: a failing test, never a hung one
                    if stop.wait(0.05):
                        break
                    conn.sendall(b"\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_a_dripped_tls_handshake_is_cut_by_the_total_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connection is watched from its connect on, and CPython also bounds a whole handshake
    # by the socket timeout (the time left): either way the drip ends at the total timeout.
    net = NetworkSpy(monkeypatch, {"covers.test": ["127.0.0.1"]})
    policy = FetchPolicy(
        address_guard=local_guard(True), connect_timeout=1.0, read_timeout=1.0, total_timeout=0.6
    )
    started = time.monotonic()
    with (
        dripping_tls_server() as port,
        Downloader(policy) as downloader,
        pytest.raises(DownloadError) as info,
    ):
        downloader.fetch(f"https://covers.test:{port}/a.jpg")
    assert info.value.code == "timeout" and "total timeout" in str(info.value)
    assert time.monotonic() - started < 2.0
    assert net.connects == ["127.0.0.1"]
