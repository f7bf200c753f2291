"""The downloader against the loopback CoverServer's programmable faults.

Small timeouts and backoff keep the suite fast; timing assertions are loose lower bounds or
generous upper bounds (never tight), the real checks are codes, attempts and hit counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from collage.engine.download import Downloader, DownloadError, FetchPolicy
from collage.engine.formats import NAMES
from collage_tools.cover_server import CoverServer, fake_jpeg
from collage_tools.loopback import local_guard
from tests.support.faults import NetworkSpy
from tests.support.hostile_images import RED, encode, heic, unsupported_images

FAST = FetchPolicy(
    connect_timeout=1.0,
    read_timeout=1.0,
    total_timeout=5.0,
    max_retries=2,
    max_bytes=1024 * 1024,
    address_guard=local_guard(True),
    backoff_base=0.01,
    backoff_cap=0.05,
)
COVER = fake_jpeg(20_000)


@pytest.fixture
def server() -> Iterator[CoverServer]:
    with CoverServer() as cover_server:
        cover_server.add("/a.jpg", COVER)
        yield cover_server


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    with Downloader(FAST, pool_size=4) as fetcher:
        yield fetcher


def fail(fetcher: Downloader, url: str) -> DownloadError:
    with pytest.raises(DownloadError) as info:
        fetcher.fetch(url)
    return info.value


def test_fetch_returns_the_bytes(server: CoverServer, downloader: Downloader) -> None:
    assert downloader.fetch(server.url("/a.jpg")) == COVER
    assert downloader.bytes_downloaded == len(COVER)
    headers = server.headers_seen["/a.jpg"]
    assert headers["User-Agent"].startswith("tiktok-cover-collage/")
    assert headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("code", [400, 403, 404, 410])
def test_client_errors_are_not_retried(
    server: CoverServer, downloader: Downloader, code: int
) -> None:
    error = fail(downloader, server.fault("/gone.jpg", "status", code=code))
    assert (error.code, error.status, error.attempts) == ("http_status", code, 1)
    assert f"HTTP {code}" in str(error)
    assert server.hits["/gone.jpg"] == 1


def test_429_honours_retry_after(server: CoverServer, downloader: Downloader) -> None:
    server.add("/busy.jpg", COVER)
    url = server.fault("/busy.jpg", "status", code=429, retry_after=1, times=1)
    started = time.monotonic()
    assert downloader.fetch(url) == COVER
    assert time.monotonic() - started >= 0.9  # waited as told, not the tiny backoff
    assert server.hits["/busy.jpg"] == 2


@pytest.mark.parametrize("code", [500, 502, 503, 408])
def test_transient_status_then_success(
    server: CoverServer, downloader: Downloader, code: int
) -> None:
    server.add("/flaky.jpg", COVER)
    assert downloader.fetch(server.fault("/flaky.jpg", "status", code=code, times=2)) == COVER
    assert server.hits["/flaky.jpg"] == 3


def test_persistent_5xx_gives_up_after_max_retries(
    server: CoverServer, downloader: Downloader
) -> None:
    error = fail(downloader, server.fault("/down.jpg", "status", code=503, retry_after=0))
    assert (error.code, error.status, error.attempts) == ("http_status", 503, 3)
    assert server.hits["/down.jpg"] == FAST.max_retries + 1


def test_reset_then_success(server: CoverServer, downloader: Downloader) -> None:
    server.add("/r.jpg", COVER)
    assert downloader.fetch(server.fault("/r.jpg", "reset", times=1)) == COVER
    assert server.hits["/r.jpg"] == 2


def test_reset_always_fails_after_retries(server: CoverServer, downloader: Downloader) -> None:
    error = fail(downloader, server.fault("/r.jpg", "reset"))
    assert error.code == "connect_failed" and error.attempts == FAST.max_retries + 1
    assert server.hits["/r.jpg"] == FAST.max_retries + 1


def test_slow_drip_is_cut_by_the_total_timeout(server: CoverServer) -> None:
    policy = FetchPolicy(**{**FAST.__dict__, "total_timeout": 0.6})
    url = server.fault("/drip.jpg", "slow", bytes_per_second=400, size=200_000)
    started = time.monotonic()
    with Downloader(policy) as fetcher:
        error = fail(fetcher, url)
    assert error.code == "timeout" and "total timeout" in str(error)
    assert time.monotonic() - started < 3.0
    assert 0 < server.bytes_sent["/drip.jpg"] < 200_000
    assert server.hits["/drip.jpg"] == 1  # no time left: not retried


def test_dripped_headers_are_cut_by_the_total_timeout(server: CoverServer) -> None:
    # One byte every 50 ms never trips the read timeout; only the attempt's watch stops it.
    policy = FetchPolicy(**{**FAST.__dict__, "total_timeout": 0.6})
    url = server.fault("/stall.jpg", "slow", bytes_per_second=20, headers=True)
    started = time.monotonic()
    with Downloader(policy) as fetcher:
        error = fail(fetcher, url)
    assert error.code == "timeout" and "total timeout" in str(error)
    assert time.monotonic() - started < 2.0
    assert server.bytes_sent["/stall.jpg"] == 0  # still inside the headers when cut


def test_dripped_headers_are_cut_at_the_deadline(server: CoverServer) -> None:
    url = server.fault("/stall.jpg", "slow", bytes_per_second=20, headers=True)
    started = time.monotonic()
    with Downloader(FAST, deadline=started + 0.5) as fetcher:
        error = fail(fetcher, url)
    assert error.code == "deadline" and error.attempts == 1
    assert time.monotonic() - started < 2.0


def test_truncated_body_is_retried_then_reported(
    server: CoverServer, downloader: Downloader
) -> None:
    error = fail(downloader, server.fault("/cut.jpg", "truncate", size=10_000))
    assert error.code == "truncated" and "5000 of 10000" in str(error)
    assert server.hits["/cut.jpg"] == FAST.max_retries + 1
    server.add("/cut2.jpg", COVER)
    assert downloader.fetch(server.fault("/cut2.jpg", "truncate", times=1)) == COVER


def test_html_is_not_an_image(server: CoverServer, downloader: Downloader) -> None:
    error = fail(downloader, server.fault("/login", "html"))
    assert error.code == "not_an_image" and "text/html" in str(error)
    assert server.hits["/login"] == 1
    assert downloader.bytes_downloaded == 0


def test_empty_body_is_not_an_image(server: CoverServer, downloader: Downloader) -> None:
    server.add("/empty.jpg", b"")
    assert fail(downloader, server.url("/empty.jpg")).code == "not_an_image"


def test_not_an_image_stops_after_the_first_chunk(server: CoverServer) -> None:
    big_text = b"<html>" + b"x" * 5_000_000
    server.add("/page.jpg", big_text, content_type="image/jpeg")  # lies about its type
    with Downloader(FetchPolicy(**{**FAST.__dict__, "max_bytes": 10 << 20})) as fetcher:
        assert fail(fetcher, server.url("/page.jpg")).code == "not_an_image"
        assert fetcher.bytes_downloaded == 0


@pytest.mark.parametrize("kind", ["tiff", "svg", "jxl", "heif"])
def test_a_refused_format_stops_after_the_first_chunk(server: CoverServer, kind: str) -> None:
    body = unsupported_images()[kind] + bytes(5_000_000)
    server.add("/cover.jpg", body, content_type="image/jpeg")
    with Downloader(FetchPolicy(**{**FAST.__dict__, "max_bytes": 10 << 20})) as fetcher:
        error = fail(fetcher, server.url("/cover.jpg"))
        assert error.code == "unsupported_format" and NAMES[kind] in str(error)
        assert fetcher.bytes_downloaded == 0


@pytest.mark.parametrize("fmt", ["AVIF", "HEIC"])
def test_avif_and_heic_are_fetched_whatever_their_content_type(
    server: CoverServer, downloader: Downloader, fmt: str
) -> None:
    picture = Image.new("RGB", (64, 64), RED)
    data = heic(picture) if fmt == "HEIC" else encode(picture, fmt)
    server.add("/page.html", data, content_type="text/html")
    assert downloader.fetch(server.url("/page.html")) == data


@pytest.mark.parametrize("declare_length", [True, False])
def test_huge_body_is_too_large(
    server: CoverServer, downloader: Downloader, declare_length: bool
) -> None:
    size = 64 * 1024 * 1024
    url = server.fault("/huge.jpg", "huge", size=size, declare_length=declare_length)
    error = fail(downloader, url)
    assert error.code == "too_large" and error.attempts == 1
    time.sleep(0.1)  # let the server notice the closed connection
    assert server.bytes_sent["/huge.jpg"] < size // 4


def test_redirect_chain_within_the_limit(server: CoverServer, downloader: Downloader) -> None:
    url = server.fault("/r", "redirect", hops=FAST.max_redirects, to="/a.jpg")
    assert downloader.fetch(url) == COVER
    hops = ["/r"] + [f"/r.hop{i}" for i in range(1, FAST.max_redirects)]
    assert [server.hits[p] for p in hops] == [1] * FAST.max_redirects
    assert server.hits["/a.jpg"] == 1


def test_redirect_chain_beyond_the_limit(server: CoverServer, downloader: Downloader) -> None:
    error = fail(
        downloader, server.fault("/r", "redirect", hops=FAST.max_redirects + 1, to="/a.jpg")
    )
    assert error.code == "too_many_redirects" and error.attempts == 1
    assert server.hits["/a.jpg"] == 0


def test_redirect_to_another_scheme_is_refused(server: CoverServer, downloader: Downloader) -> None:
    error = fail(downloader, server.fault("/r", "redirect", to="file:///etc/passwd"))
    assert error.code == "scheme_not_allowed" and "redirect" in str(error)


def test_redirect_to_a_blocked_address_is_refused_before_connecting(
    server: CoverServer, downloader: Downloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = NetworkSpy(monkeypatch, {"internal.test": ["10.0.0.1"], "meta.test": ["169.254.169.254"]})
    port = server.base_url.rsplit(":", 1)[1]
    for host in ("internal.test", "meta.test", "169.254.169.254", "[fd00::1]"):
        path = f"/to-{host.strip('[]')}"
        url = server.fault(path, "redirect", to=f"http://{host}:{port}/x.jpg")
        error = fail(downloader, url)
        assert error.code == "address_blocked" and error.attempts == 1
        assert server.hits[path] == 1
    assert set(net.connects) == {"127.0.0.1"}  # only the loopback server was ever contacted


def test_loopback_is_refused_unless_allowed(server: CoverServer) -> None:
    policy = FetchPolicy(**{**FAST.__dict__, "address_guard": None})
    with Downloader(policy) as fetcher:
        for url in (server.url("/a.jpg"), server.url("/a.jpg").replace("127.0.0.1", "[::1]")):
            error = fail(fetcher, url)
            assert error.code == "address_blocked" and "loopback" in str(error)
    assert server.hits["/a.jpg"] == 0 and server.connections == 0


def test_host_name_is_resolved_once_and_sent_as_host(
    server: CoverServer, downloader: Downloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = NetworkSpy(monkeypatch, {"covers.test": ["127.0.0.1"]})
    port = server.base_url.rsplit(":", 1)[1]
    for _ in range(3):
        assert downloader.fetch(f"http://covers.test:{port}/a.jpg") == COVER
    assert net.resolved == ["covers.test"]  # one connection, reused: one lookup
    assert "covers.test" not in net.lookups  # nobody resolved the name a second time
    assert server.headers_seen["/a.jpg"]["Host"] == f"covers.test:{port}"
    assert server.connections == 1


def test_an_unreachable_address_falls_back_to_the_next_vetted_one(
    server: CoverServer, downloader: Downloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on [::1] at the server's port (or there is no IPv6): refused, so the
    # connection goes to the host's next vetted address, still without a second lookup.
    net = NetworkSpy(monkeypatch, {"dual.test": ["::1", "127.0.0.1"]})
    port = server.base_url.rsplit(":", 1)[1]
    assert downloader.fetch(f"http://dual.test:{port}/a.jpg") == COVER
    assert net.resolved == ["dual.test"] and "dual.test" not in net.lookups
    assert net.connects == ["::1", "127.0.0.1"]
    assert server.headers_seen["/a.jpg"]["Host"] == f"dual.test:{port}"


def test_connections_are_reused_across_threads(server: CoverServer) -> None:
    urls = [server.add(f"/c{i}.jpg", fake_jpeg(10_000 + i)) for i in range(20)]
    with Downloader(FAST, pool_size=4) as fetcher, ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(fetcher.fetch, urls))
        assert [len(b) for b in bodies] == [10_000 + i for i in range(20)]
        assert fetcher.bytes_downloaded == sum(len(b) for b in bodies)
    assert sum(server.hits[f"/c{i}.jpg"] for i in range(20)) == 20
    assert server.connections <= 4


def test_error_responses_keep_the_connection(server: CoverServer, downloader: Downloader) -> None:
    server.fault("/missing.jpg", "status", code=404)
    for _ in range(3):
        fail(downloader, server.url("/missing.jpg"))
        downloader.fetch(server.url("/a.jpg"))
    assert server.connections == 1


def test_deadline_stops_retries(server: CoverServer) -> None:
    url = server.fault("/busy.jpg", "status", code=503, retry_after=1)
    started = time.monotonic()
    with Downloader(FAST, deadline=started + 0.5) as fetcher:
        error = fail(fetcher, url)
    assert error.code == "deadline" and error.status == 503 and error.attempts == 1
    assert time.monotonic() - started < 0.5  # did not sleep into the deadline
    assert server.hits["/busy.jpg"] == 1


def test_deadline_cuts_a_slow_download(server: CoverServer) -> None:
    url = server.fault("/drip.jpg", "slow", bytes_per_second=400, size=200_000)
    started = time.monotonic()
    with Downloader(FAST, deadline=started + 0.5) as fetcher:
        error = fail(fetcher, url)
    assert error.code == "deadline"
    assert time.monotonic() - started < 2.0


def test_deadline_passed_sends_nothing(server: CoverServer) -> None:
    with Downloader(FAST, deadline=time.monotonic() - 0.1) as fetcher:
        error = fail(fetcher, server.url("/a.jpg"))
    assert error.code == "deadline" and error.attempts == 0
    assert server.hits["/a.jpg"] == 0


def test_retry_after_longer_than_the_time_left_is_not_waited(server: CoverServer) -> None:
    url = server.fault("/later.jpg", "status", code=429, retry_after=30)
    policy = FetchPolicy(**{**FAST.__dict__, "total_timeout": 2.0})
    started = time.monotonic()
    with Downloader(policy) as fetcher:
        error = fail(fetcher, url)
    assert (error.code, error.status, error.attempts) == ("http_status", 429, 1)
    assert "no time to retry" in str(error)
    assert time.monotonic() - started < 1.0


def test_environment_proxies_are_ignored(
    server: CoverServer, downloader: Downloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("http_proxy", "http://10.9.9.9:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert downloader.fetch(server.url("/a.jpg")) == COVER
    assert server.hits["/a.jpg"] == 1


def test_credentials_are_not_reported_or_logged(
    server: CoverServer, downloader: Downloader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server.fault("/secret.jpg", "status", code=503)
    url = server.url("/secret.jpg").replace("http://", "http://alice:s3cret@")
    error = fail(downloader, url)
    assert error.code == "http_status" and error.attempts == 3
    assert "s3cret" not in str(error) and "alice" not in str(error)
    assert "s3cret" not in caplog.text and "alice" not in caplog.text


def test_server_stops_promptly_with_idle_keepalive_connections() -> None:
    cover_server = CoverServer().start()
    cover_server.add("/a.jpg", COVER)
    fetcher = Downloader(FAST)
    fetcher.fetch(cover_server.url("/a.jpg"))  # leaves a pooled keep-alive connection open
    started = time.monotonic()
    cover_server.stop()
    assert time.monotonic() - started < 2.0
    fetcher.close()


def test_cover_server_serves_a_directory(tmp_path: Path, downloader: Downloader) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.jpg").write_bytes(fake_jpeg(300))
    (tmp_path / "sub" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with CoverServer() as cover_server:
        urls = cover_server.add_directory(tmp_path, prefix="/covers")
        assert urls == [cover_server.url("/covers/b.jpg"), cover_server.url("/covers/sub/a.png")]
        assert [len(downloader.fetch(url)) for url in urls] == [300, 108]
        assert cover_server.headers_seen["/covers/sub/a.png"]["Accept-Encoding"] == "identity"
