"""url_guard: address classification, host suffixes, schemes, credential scrubbing."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest

from collage.engine import url_guard
from collage.engine.url_guard import (
    AddressGuard,
    UrlRefused,
    blocked_reason,
    check_url,
    host_matches,
    normalize_suffixes,
    scrub_text,
    scrub_url,
    url_problem,
)
from collage_tools.loopback import local_guard

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.7", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "private"),  # "this network"
    ("240.0.0.1", "private"),  # reserved class E (ipaddress lists it as private)
    ("255.255.255.255", "private"),
    ("192.0.2.1", "private"),  # documentation
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private (unique local)"),
    ("fd12:3456:789a::1", "private (unique local)"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),  # documentation
    ("2001::1", "reserved"),  # Teredo
    ("::a00:1", "reserved"),  # deprecated IPv4-compatible
    ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local (cloud metadata)"),
    ("::ffff:100.64.0.1", "IPv4-mapped shared (CGNAT)"),
    ("64:ff9b::a00:1", "NAT64 private"),
    ("64:ff9b::a9fe:a9fe", "NAT64 link-local (cloud metadata)"),
    ("64:ff9b::7f00:1", "NAT64 loopback"),
    ("2002:a00:1::1", "6to4 private"),
    ("2002:a9fe:a9fe::", "6to4 link-local (cloud metadata)"),
    ("2002:7f00:1::", "6to4 loopback"),
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_non_public_addresses_are_blocked(address: str, reason: str) -> None:
    assert blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
def test_allow_loopback_admits_loopback(address: str) -> None:
    assert local_guard(allow_loopback=True).address_reason(address) is None
    assert AddressGuard().address_reason(address) is not None  # the deployed guard refuses it


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "::",
        "fe80::1",
        "fd00::1",
        "100.64.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
    ],
)
def test_allow_loopback_admits_nothing_else(address: str) -> None:
    assert local_guard(allow_loopback=True).address_reason(address) is not None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("p16-sign-va.tiktokcdn.com", True),
        ("tiktokcdn.com", True),
        ("TikTokCDN.com.", True),
        ("a.b.c.tiktokcdn.com", True),
        ("evil-tiktokcdn.com", False),
        ("xtiktokcdn.com", False),
        ("tiktokcdn.com.evil.net", False),
        ("tiktokcdn.co", False),
        ("com", False),
    ],
)
def test_suffix_matching_on_label_boundaries(host: str, expected: bool) -> None:
    assert host_matches(host, ("tiktokcdn.com",)) is expected


def test_normalize_suffixes() -> None:
    assert normalize_suffixes([".TikTokCDN.com.", "bücher.example"]) == (
        "tiktokcdn.com",
        "xn--bcher-kva.example",
    )
    with pytest.raises(ValueError):
        normalize_suffixes(["."])


def test_check_host_uses_the_suffix_list() -> None:
    guard = AddressGuard(allowed_host_suffixes=("tiktokcdn.com",))
    guard.check_host("p16.tiktokcdn.com")
    for host in ("evil-tiktokcdn.com", "93.184.216.34", "[2606:4700::1]"):
        with pytest.raises(UrlRefused) as info:
            guard.check_host(host)
        assert info.value.code == "host_not_allowed"
    AddressGuard().check_host("anything.example")  # empty list = any host


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/a.jpg",
        "file:///etc/passwd",
        "gopher://h/",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//h/a.jpg",
        "a.jpg",
        "mailto:a@b.c",
    ],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(UrlRefused) as info:
        check_url(url, AddressGuard())
    assert info.value.code == "scheme_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://",
        "https:///a.jpg",
        "http://exa mple.com/",
        "http://a.com\\@b.com/",
        "http://h:99999/",
        "http://h:0/",
        "http://h:x/",
        "http://h/\x00",
        "http://h/a\nb",
        "http://[::1/",
    ],
)
def test_malformed_urls(url: str) -> None:
    with pytest.raises(UrlRefused) as info:
        check_url(url, AddressGuard())
    assert info.value.code == "invalid_url"


def test_check_url_returns_the_host() -> None:
    assert check_url("HTTPS://P16.TikTokCDN.com:443/a.jpeg?x=1", AddressGuard()) == (
        "p16.tiktokcdn.com"
    )
    assert check_url("http://[::1]:8080/a", AddressGuard()) == "::1"
    guard = AddressGuard(allowed_host_suffixes=("tiktokcdn.com",))
    with pytest.raises(UrlRefused) as info:
        check_url("https://tiktokcdn.com.evil.net/a.jpg", guard)
    assert info.value.code == "host_not_allowed"


def _fake_resolver(monkeypatch: pytest.MonkeyPatch, table: dict[str, object]) -> list[str]:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        answer = table[host]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)  # type: ignore[call-overload]

    monkeypatch.setattr(url_guard, "resolve", resolve)
    return asked


def test_vet_checks_every_resolved_address(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_resolver(
        monkeypatch,
        {
            "cdn.example": ["93.184.216.34", "2606:4700::1"],
            "mixed.example": ["93.184.216.34", "10.0.0.5"],
            "meta.example": ["169.254.169.254"],
            "gone.example": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "empty.example": [],
        },
    )
    guard = AddressGuard()
    assert guard.vet("cdn.example", 443) == ["93.184.216.34", "2606:4700::1"]
    with pytest.raises(UrlRefused) as info:
        guard.vet("mixed.example", 443)
    assert info.value.code == "address_blocked"
    assert "10.0.0.5" in str(info.value) and "private" in str(info.value)
    with pytest.raises(UrlRefused) as info:
        guard.vet("meta.example", 80)
    assert info.value.code == "address_blocked" and "metadata" in str(info.value)
    for host in ("gone.example", "empty.example"):
        with pytest.raises(UrlRefused) as info:
            guard.vet(host, 80)
        assert info.value.code == "dns_failed"


def test_vet_checks_the_suffix_before_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_resolver(monkeypatch, {"evil-tiktokcdn.com": ["93.184.216.34"]})
    with pytest.raises(UrlRefused) as info:
        AddressGuard(allowed_host_suffixes=("tiktokcdn.com",)).vet("evil-tiktokcdn.com", 443)
    assert info.value.code == "host_not_allowed"
    assert asked == []


def test_resolve_does_not_look_up_ip_literals(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("DNS lookup for an IP literal")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert url_guard.resolve("10.1.2.3", 80) == ["10.1.2.3"]
    # Compared as addresses: Python 3.13 writes an IPv4-mapped address as ::ffff:169.254.169.254.
    (mapped,) = url_guard.resolve("::ffff:a9fe:a9fe", 80)
    assert ipaddress.ip_address(mapped) == ipaddress.ip_address("::ffff:a9fe:a9fe")


def test_scrub_url_drops_credentials_and_query() -> None:
    shown = scrub_url("https://alice:s3cret@cdn.example/covers/a.jpg?x-signature=abc#frag")
    assert shown == "https://cdn.example/covers/a.jpg?…"
    assert scrub_url("http://user@h/p") == "http://h/p"
    long = scrub_url("https://h/" + "a" * 500)
    assert len(long) == 160 and long.endswith("…")


def test_scrub_text_removes_credentials_inside_messages() -> None:
    text = "failed: http://alice:s3cret@h/x and https://tok@g/y"
    assert scrub_text(text) == "failed: http://h/x and https://g/y"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (  # TikTok's CDN: the signature masked, the expiry kept (no secret, explains a 403)
            "https://p16.tiktokcdn.com/a.jpeg?x-expires=1737300000&x-signature=Zk9v%2Bq%3D",
            "https://p16.tiktokcdn.com/a.jpeg?x-expires=1737300000&x-signature=***",
        ),
        (  # an S3 presigned URL: every X-Amz-* value
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1"
            "&X-Amz-Signature=ab12&versionId=3",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=***&X-Amz-Credential=***"
            "&X-Amz-Signature=***&versionId=3",
        ),
        (  # a quoted CSV row: the masked value runs to the next field, never shows in part
            "alice,https://h/refused.jpg?token=secret2,2025-01-19",
            "alice,https://h/refused.jpg?token=***",
        ),
        (
            "GET /c.jpg?w=216&sig=abc;key=k1&Password=p#frag and ?apiKey=z&access_token=t",
            "GET /c.jpg?w=216&sig=***;key=***&Password=***#frag and ?apiKey=***&access_token=***",
        ),
        ("a?Key-Pair-Id=K2&Policy=eyJ&Signature=s~1", "a?Key-Pair-Id=***&Policy=eyJ&Signature=***"),
        ("https://h/p?x=1&token=&y=2", "https://h/p?x=1&token=&y=2"),  # nothing to mask
    ],
)
def test_scrub_text_masks_credential_query_values_keeping_names(text: str, shown: str) -> None:
    assert scrub_text(text) == shown
    assert scrub_text(shown) == shown  # masking twice changes nothing


def test_scrub_url_masks_a_url_it_cannot_parse() -> None:
    shown = scrub_url("http://[bad/a.jpg?x-signature=s3cret&x-expires=1")
    assert "s3cret" not in shown and "x-signature=***" in shown


def test_refusal_messages_never_show_credentials() -> None:
    for url in ("ftp://alice:s3cret@h/x", "http://alice:s3cret@h:99999/x"):
        with pytest.raises(UrlRefused) as info:
            check_url(url, AddressGuard())
        assert "s3cret" not in str(info.value) and "alice" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "missing cover_url"),
        ("https://x.example/" + "a" * 2031, "cover_url longer than 2048 characters"),
        ("https://x.example/a b", "cover_url contains whitespace or control characters"),
        ("https://x.example/\u00a0", "cover_url contains whitespace or control characters"),
        ("https://x.example/del\x7f", "cover_url contains whitespace or control characters"),
        ("https://a.com\\@b.com/", "cover_url contains a backslash"),
        ("https://x.example:99999/", "invalid cover_url: Port out of range 0-65535"),
        ("https://[::1/a.jpg", "invalid cover_url: Invalid IPv6 URL"),
        ("ftp://x.example/a.jpg", "cover_url scheme must be http or https, got 'ftp'"),
        ("nope", "cover_url scheme must be http or https, got 'none'"),
        ("https:///a.jpg", "cover_url has no host"),
        ("https://x.example:0/a.jpg", "invalid cover_url: port 0"),
    ],
)
def test_url_problem_says_why_in_the_reports_words(url: str, why: str) -> None:
    """The one cover-URL rule (issue 23): the CSV's rows and every download use it."""
    assert url_problem(url) is not None and url_problem(url)[1] == why  # type: ignore[index]
    if "longer than" not in why:  # a download may follow a longer URL (the next test)
        with pytest.raises(UrlRefused):
            check_url(url, AddressGuard())
    assert url_problem("https://x.example/" + "a" * 2030) is None  # 2,048 characters


def test_what_the_splits_fast_path_passes_url_problem_passes() -> None:
    """PLAIN_URL (Arrow's regex) may only pass URLs that url_problem passes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from collage.engine.url_guard import PLAIN_URL

    rnd = random.Random(23)
    good = "aZ09.-_~:/?#[]@!$&'()*+,;=%\"<>^`{|}"
    bad = "\\ \t\x7fé\u00a0\u2028"
    heads = ["http://", "https://", "HTTP://", "ftp://", "https:/", ""]
    hosts = ["x.example", "-.example", "a_b.example", "[::1]", "x.example:80", "", "é.example"]
    urls = [
        rnd.choice(heads)
        + rnd.choice(hosts)
        + rnd.choice(["/", "/", "/", "?", ""])
        + "".join(rnd.choices(good + bad * (n % 2), k=rnd.randint(0, 9)))
        for n in range(20_000)
    ]
    plain = pc.match_substring_regex(pa.array(urls), PLAIN_URL).to_pylist()
    passed = [url for url, fine in zip(urls, plain, strict=True) if fine]
    assert len(passed) > 500
    assert [url for url in passed if url_problem(url)] == []


def test_a_fetched_url_may_be_longer_than_a_csv_row_url() -> None:
    """A redirect to a presigned URL with a session token can pass 2,048 characters: the
    downloader follows it (up to 8 KiB); a CSV row with it is refused (map items stay small)."""
    from collage.engine.url_guard import MAX_FETCH_URL_LENGTH, url_problem

    signed = "https://bucket.s3.amazonaws.com/c.jpg?X-Amz-Security-Token=" + "a" * 3000
    assert check_url(signed, AddressGuard()) == "bucket.s3.amazonaws.com"
    assert url_problem(signed) == ("invalid_url", "cover_url longer than 2048 characters")
    with pytest.raises(UrlRefused):
        check_url(signed + "a" * MAX_FETCH_URL_LENGTH, AddressGuard())
