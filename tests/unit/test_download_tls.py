"""HTTPS through the guarded connection: the socket goes to the vetted IP, yet TLS still sends
SNI for the host name and verifies the certificate against it."""

from __future__ import annotations

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
