"""Downloader without a server: policy, refusals before any socket, Retry-After, backoff."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from collage.config import ProcessingConfig
from collage.engine import bounded_body, download, fetch_errors
from collage.engine.download import Downloader, DownloadError, FetchPolicy
from collage.engine.url_guard import AddressGuard
from collage_tools.loopback import local_guard
from tests.support.faults import NetworkSpy


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> NetworkSpy:
    return NetworkSpy(
        monkeypatch,
        {
            "internal.test": ["10.0.0.1"],
            "metadata.test": ["169.254.169.254"],
            "mixed.test": ["93.184.216.34", "10.0.0.5"],
            "cgnat.test": ["100.64.1.1"],
            "v6private.test": ["fd00::5"],
            "mapped.test": ["::ffff:10.0.0.1"],
            "nat64.test": ["64:ff9b::a9fe:a9fe"],
            "p16.tiktokcdn.com": ["10.1.1.1"],
        },
    )


def test_policy_defaults_match_the_contract() -> None:
    policy = FetchPolicy()
    assert (policy.connect_timeout, policy.read_timeout, policy.total_timeout) == (5, 30, 60)
    assert (policy.max_retries, policy.max_bytes, policy.max_redirects) == (3, 20 << 20, 5)
    assert policy.address_guard is None  # the Downloader then enforces AddressGuard()


def test_policy_from_config() -> None:
    config = ProcessingConfig(timeout=12.0, max_retries=1, max_image_bytes=4096)
    guard = AddressGuard(allowed_host_suffixes=(".TikTokCDN.com",))
    policy = FetchPolicy.from_config(config, guard)
    assert policy.read_timeout == 12.0 and policy.max_retries == 1 and policy.max_bytes == 4096
    assert policy.connect_timeout == 5.0 and policy.total_timeout >= 2 * 12.0
    assert policy.address_guard is guard
    assert guard.allowed_host_suffixes == ("tiktokcdn.com",)
    assert FetchPolicy.from_config(ProcessingConfig(timeout=200.0)).total_timeout == 400.0


@pytest.mark.parametrize(
    "bad",
    [
        {"read_timeout": 0},
        {"total_timeout": -1},
        {"max_retries": -1},
        {"max_bytes": 0},
        {"backoff_base": -0.1},
    ],
)
def test_policy_rejects_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(**bad)


@pytest.mark.parametrize("suffixes", [("",), ("a..b",)])
def test_guard_rejects_nonsense_suffixes(suffixes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        AddressGuard(allowed_host_suffixes=suffixes)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://internal.test/a.jpg", "private"),
        ("http://metadata.test/latest/meta-data/", "metadata"),
        ("http://mixed.test/a.jpg", "private"),
        ("http://cgnat.test/a.jpg", "CGNAT"),
        ("http://v6private.test/a.jpg", "unique local"),
        ("http://mapped.test/a.jpg", "IPv4-mapped private"),
        ("http://nat64.test/a.jpg", "NAT64 link-local"),
        ("https://internal.test/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped link-local"),
        ("http://[fe80::1]/a.jpg", "link-local"),
        ("http://2130706433/a.jpg", "loopback"),  # decimal 127.0.0.1
        ("http://0x7f.1/a.jpg", "loopback"),  # hex shorthand
        ("http://127.0.0.1:9/a.jpg", "loopback"),
        ("http://0.0.0.0:9/a.jpg", "unspecified"),
    ],
)
def test_blocked_addresses_are_refused_before_any_socket(
    net: NetworkSpy, url: str, reason: str
) -> None:
    with Downloader(FetchPolicy(max_retries=3)) as downloader, pytest.raises(DownloadError) as info:
        downloader.fetch(url)
    assert info.value.code == "address_blocked"
    assert reason in str(info.value)
    assert info.value.attempts == 1  # refusals are final, never retried
    assert net.connects == []


def test_allow_loopback_does_not_open_private_ranges(net: NetworkSpy) -> None:
    policy = FetchPolicy(address_guard=local_guard(allow_loopback=True))
    with Downloader(policy) as downloader:
        for url in ("http://internal.test/a.jpg", "http://metadata.test/", "http://[::]:9/"):
            with pytest.raises(DownloadError) as info:
                downloader.fetch(url)
            assert info.value.code == "address_blocked"
    assert net.connects == []


def test_host_suffix_list_is_checked_before_resolving(net: NetworkSpy) -> None:
    policy = FetchPolicy(address_guard=AddressGuard(allowed_host_suffixes=("tiktokcdn.com",)))
    with Downloader(policy) as downloader:
        for url in (
            "https://evil-tiktokcdn.com/a.jpg",
            "https://tiktokcdn.com.evil.net/a.jpg",
            "https://93.184.216.34/a.jpg",
        ):
            with pytest.raises(DownloadError) as info:
                downloader.fetch(url)
            assert info.value.code == "host_not_allowed"
            assert info.value.attempts == 0
        # An allowed name is still resolved and its address checked.
        with pytest.raises(DownloadError) as info:
            downloader.fetch("https://p16.tiktokcdn.com/a.jpg")
        assert info.value.code == "address_blocked"
    assert net.resolved == ["p16.tiktokcdn.com"]
    assert net.connects == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://cdn.example/a.jpg", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("not a url", "invalid_url"),
        ("http://", "invalid_url"),
        ("http://cdn.example:70000/a.jpg", "invalid_url"),
    ],
)
def test_bad_urls_are_refused_without_a_lookup(net: NetworkSpy, url: str, code: str) -> None:
    with Downloader(FetchPolicy()) as downloader, pytest.raises(DownloadError) as info:
        downloader.fetch(url)
    assert info.value.code == code and info.value.attempts == 0
    assert net.resolved == [] and net.connects == []


def test_unknown_host_is_dns_failed(net: NetworkSpy) -> None:
    with Downloader(FetchPolicy()) as downloader, pytest.raises(DownloadError) as info:
        downloader.fetch("https://nowhere.test/a.jpg")
    assert info.value.code == "dns_failed" and "nowhere.test" in str(info.value)
    assert net.connects == []


def test_credentials_never_appear_in_errors(
    net: NetworkSpy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with Downloader(FetchPolicy()) as downloader:
        for url in (
            "http://alice:s3cret@internal.test/a.jpg?sig=zz",
            "ftp://alice:s3cret@internal.test/a.jpg",
            "http://alice:s3cret@nowhere.test/a.jpg",
        ):
            with pytest.raises(DownloadError) as info:
                downloader.fetch(url)
            assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    assert "s3cret" not in caplog.text


def test_deadline_already_passed(net: NetworkSpy) -> None:
    downloader = Downloader(FetchPolicy(), deadline=time.monotonic() - 1)
    with downloader, pytest.raises(DownloadError) as info:
        downloader.fetch("http://internal.test/a.jpg")
    assert info.value.code == "deadline" and info.value.attempts == 0
    assert net.resolved == []


def test_retry_after_parsing() -> None:
    assert fetch_errors.retry_after("3") == 3.0
    assert fetch_errors.retry_after(" 0 ") == 0.0
    assert fetch_errors.retry_after(None) is None
    assert fetch_errors.retry_after("soon") is None
    assert fetch_errors.retry_after("-5") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= fetch_errors.retry_after(later) <= 31
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert fetch_errors.retry_after(earlier) == 0.0


def test_backoff_is_full_jitter_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = FetchPolicy(backoff_base=0.5, backoff_cap=3.0, retry_after_cap=10.0)
    downloader = Downloader(policy)
    bounds: list[tuple[float, float]] = []
    monkeypatch.setattr(download.random, "uniform", lambda a, b: bounds.append((a, b)) or b)
    assert [downloader._delay(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(low == 0 for low, _ in bounds)
    # Retry-After wins over the backoff, but only up to its own cap.
    assert downloader._delay(1, 4.0) == 4.0
    assert downloader._delay(1, 600.0) == 10.0
    downloader.close()


def test_content_length_parsing() -> None:
    assert bounded_body.content_length("123") == 123
    assert bounded_body.content_length(None) is None
    assert bounded_body.content_length("-1") is None
    assert bounded_body.content_length("12, 12") is None
