"""Which URLs and addresses a cover download may reach (server-side request forgery guard).

Cover URLs come from users' CSV files, so a URL may point at the Lambda's own network: the
instance metadata address, a VPC endpoint, a database. Every host is resolved here and every
resolved address checked; the downloader then connects to exactly the address that passed
(no second DNS lookup a rebinding server could answer differently).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from collage.config import MAX_URL_LENGTH

ALLOWED_SCHEMES = ("http", "https")

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_ULA = ipaddress.ip_network("fc00::/7")
_USERINFO = re.compile(r"(?<=//)[^/?#@\s]*@")
# A query parameter anywhere in a text: `?name=value` or `&name=value`. The value runs to the
# next `&`, `;`, `#`, space or quote (a comma does not end it: a CSV row's next field is masked
# with it rather than a signature that holds a comma shown in part).
_QUERY_PARAMETER = re.compile(
    r"(?P<lead>[?&;])(?P<name>[^=&#;?\s\"'<>]+)=(?P<value>[^&;#\s\"'<>]+)"
)
# Parameter names that carry a credential: signed CDN URLs (x-signature, Signature, sig,
# token, hdnts), S3 presigned URLs (every X-Amz-*), API keys, passwords, sessions. Expiry
# times (x-expires, Expires) are no secret and help explain a 403, so they stay.
_SECRET_NAME = re.compile(
    r"^x-amz-|token|sig|key|pass|pwd|secret|credential|auth|session|hmac|jwt|hdnts",
    re.IGNORECASE,
)
MASK = "***"
# Whitespace (Unicode's, as str.isspace) and control characters: no valid URL carries them raw,
# and parsers disagree on them (a classic guard bypass).
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
# A URL this matches (RE2 syntax, for Arrow) in full, and no longer than MAX_URL_LENGTH, is one
# url_problem passes: http(s), a plain host name, then printable ASCII but space and backslash.
PLAIN_URL = r"^https?://[A-Za-z0-9.-]+/[!-\[\]-~]*$"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """A URL or the address it resolves to may not be fetched; `code` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in resolver order. Tests replace this function."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def blocked_reason(address: str | Address) -> str | None:
    """Why `address` is not a public unicast address (e.g. 'private'), or None when it is."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _v4_reason(ip.ipv4_mapped, "IPv4-mapped ")
        if ip in _NAT64:
            return _v4_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64 ")
        if ip in _SIXTOFOUR and ip.sixtofour is not None:
            # The embedded IPv4 address decides, as for NAT64: from Python 3.13 ipaddress calls
            # all of 2002::/16 private (IANA's registry gives it no global reachability).
            return _v4_reason(ip.sixtofour, "6to4 ")
        return _v6_reason(ip)
    return _v4_reason(ip, "")


def _v4_reason(ip: ipaddress.IPv4Address, prefix: str) -> str | None:
    reason = next((reason for test, reason in _V4_REASONS if test(ip)), None)
    return prefix + reason if reason else None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    return next((reason for test, reason in _V6_REASONS if test(ip)), None)


# The first that holds names the address's kind, so the order matters: the metadata address
# is link-local too, CGNAT's is not private to ipaddress but not global either.
_V4_REASONS: tuple[tuple[Callable[[ipaddress.IPv4Address], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "unspecified"),
    (lambda ip: ip.is_loopback, "loopback"),
    (lambda ip: str(ip) == "169.254.169.254", "link-local (cloud metadata)"),
    (lambda ip: ip.is_link_local, "link-local"),
    (lambda ip: ip in _CGNAT, "shared (CGNAT)"),
    (lambda ip: ip.is_multicast, "multicast"),
    (lambda ip: ip.is_private, "private"),
    (lambda ip: ip.is_reserved or not ip.is_global, "reserved"),
)
_V6_REASONS: tuple[tuple[Callable[[ipaddress.IPv6Address], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "unspecified"),
    (lambda ip: ip.is_loopback, "loopback"),
    (lambda ip: ip.is_link_local, "link-local"),
    (lambda ip: ip in _ULA, "private (unique local)"),
    (lambda ip: ip.is_site_local, "site-local"),
    (lambda ip: ip.is_multicast, "multicast"),
    (lambda ip: ip.is_reserved or ip.is_private or not ip.is_global, "reserved"),
)


def normalize_suffixes(suffixes: Sequence[str]) -> tuple[str, ...]:
    """Lower-case ASCII (IDNA) DNS suffixes without leading or trailing dots."""
    out = []
    for suffix in suffixes:
        text = suffix.strip().strip(".").lower()
        if not text:
            raise ValueError(f"empty host suffix in {list(suffixes)!r}")
        try:
            out.append(_ascii_host(text))
        except UrlRefused:
            raise ValueError(f"host suffix {suffix!r} is not a valid DNS name") from None
    return tuple(out)


def host_matches(host: str, suffixes: Sequence[str]) -> bool:
    """True when `host` is one of `suffixes` or below one on a label boundary."""
    name = host.rstrip(".").lower()
    return any(name == s or name.endswith("." + s) for s in suffixes)


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused("invalid_url", "host name is not valid") from None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressGuard:
    """The SSRF policy a connection enforces: which hosts by name, which addresses once resolved.

    Built once where a handler or a tool is wired up. The deployed functions build it with no
    `permitted_networks`; a local tool that serves covers itself permits its loopback network.
    """

    allowed_host_suffixes: tuple[str, ...] = ()  # empty = any public host
    permitted_networks: tuple[Network, ...] = ()  # special-use networks allowed all the same

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "allowed_host_suffixes", normalize_suffixes(self.allowed_host_suffixes)
        )

    def permits(self, address: Address) -> bool:
        """True when `address` (or the IPv4 address it maps) is in a permitted network."""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(ip in net for ip in (address, mapped) if ip for net in self.permitted_networks)

    def address_reason(self, address: str) -> str | None:
        """Why the connection may not go to `address`, or None when it may."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return "unparseable"
        return None if self.permits(ip) else blocked_reason(ip)

    def check_host(self, host: str) -> None:
        if not self.allowed_host_suffixes:
            return
        name = host.strip("[]").lower()
        if not host_matches(
            name if name.isascii() else _ascii_host(name), self.allowed_host_suffixes
        ):
            raise UrlRefused("host_not_allowed", f"host {name} is not in the allowed host list")

    def vet(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and return its addresses, refusing if ANY of them is blocked."""
        host = host.strip("[]")
        self.check_host(host)
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise UrlRefused("dns_failed", f"cannot resolve {host}: {_short(exc)}") from None
        if not addresses:
            raise UrlRefused("dns_failed", f"cannot resolve {host}: no addresses")
        for address in addresses:
            reason = self.address_reason(address)
            if reason:
                shown = address if address == host else f"{host} ({address})"
                raise UrlRefused("address_blocked", f"{shown} is a {reason} address")
        return addresses


# A URL the downloader follows (a redirect's Location too) may be longer than a CSV's: a CDN
# may redirect to a presigned URL with a session token. 8 KiB is what common servers accept in
# a request line; the CSV's own bound (MAX_URL_LENGTH) keeps map items small.
MAX_FETCH_URL_LENGTH = 8192


def url_problem(url: str, max_length: int = MAX_URL_LENGTH) -> tuple[str, str] | None:
    """(refusal code, why in the CSV report's words) when `url` cannot be a cover URL; None
    when its form is fine (its host and addresses are AddressGuard's to judge). The one rule
    for a cover URL: the split checks each CSV row with it (collage.split's fast path passes
    only URLs that PLAIN_URL matches, a part of what it passes), a download each URL and
    redirect (check_url)."""
    if not url:
        return "invalid_url", "missing cover_url"
    if len(url) > max_length:
        return "invalid_url", f"cover_url longer than {max_length} characters"
    if _BAD_CHARS.search(url):
        return "invalid_url", "cover_url contains whitespace or control characters"
    if "\\" in url:  # a parser that reads it as `/` sees another host (a classic guard bypass)
        return "invalid_url", "cover_url contains a backslash"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return "invalid_url", f"invalid cover_url: {error}"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        shown = repr(parts.scheme or "none")
        return "scheme_not_allowed", f"cover_url scheme must be http or https, got {shown}"
    if not parts.hostname:
        return "invalid_url", "cover_url has no host"
    return ("invalid_url", "invalid cover_url: port 0") if port == 0 else None


def check_url(url: str, guard: AddressGuard) -> str:
    """Refuse a URL that url_problem refuses or that is outside the host list; return its host."""
    valid = isinstance(url, str)
    problem = url_problem(url, MAX_FETCH_URL_LENGTH) if valid else ("invalid_url", "")
    if problem and problem[0] == "scheme_not_allowed":
        shown = urlsplit(url).scheme.lower() or "none"
        raise UrlRefused(problem[0], f"scheme {shown} is not allowed (http, https only)")
    if problem:
        raise UrlRefused(problem[0], f"not a valid URL: {scrub_url(str(url))}")
    host = urlsplit(url).hostname or ""
    guard.check_host(host)
    return host


def is_secret_parameter(name: str) -> bool:
    """True for a query parameter (or a database URL's option) whose value is a credential."""
    return bool(_SECRET_NAME.search(unquote(name)))


def _mask_parameter(match: re.Match[str]) -> str:
    if not is_secret_parameter(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"


def scrub_url(url: str, limit: int = 160) -> str:
    """A URL safe to show in a report: no credentials, no query (often a signature), bounded.
    Shortened as it is, it goes through scrub_text too (a URL urlsplit cannot parse)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        text = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url
        if parts.query:
            text += "?…"
    except ValueError:
        text = _USERINFO.sub("", url)
    text = scrub_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub_text(text: str) -> str:
    """Credentials out of any text that may hold URLs (a message, a quoted CSV row, a log
    line): a URL's `user:password@` removed, and the value of every credential-like query
    parameter (is_secret_parameter) replaced with `***`, its name kept. The one masking
    function: reports, row issues, the run summary and log lines all pass through it."""
    return _QUERY_PARAMETER.sub(_mask_parameter, _USERINFO.sub("", text))


def _short(exc: BaseException) -> str:
    text = scrub_text(str(exc)) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
