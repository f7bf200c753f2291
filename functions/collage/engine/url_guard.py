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
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_ULA = ipaddress.ip_network("fc00::/7")
_USERINFO = re.compile(r"(?<=//)[^/?#@\s]*@")
# Characters no valid URL carries raw; parsers disagree on them (a classic guard bypass).
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")

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
    if ip.is_unspecified:
        reason = "unspecified"
    elif ip.is_loopback:
        reason = "loopback"
    elif ip.is_link_local:
        reason = "link-local (cloud metadata)" if str(ip) == "169.254.169.254" else "link-local"
    elif ip in _CGNAT:
        reason = "shared (CGNAT)"
    elif ip.is_multicast:
        reason = "multicast"
    elif ip.is_private:
        reason = "private"
    elif ip.is_reserved or not ip.is_global:
        reason = "reserved"
    else:
        reason = None
    return prefix + reason if reason else None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip in _ULA:
        return "private (unique local)"
    if ip.is_site_local:
        return "site-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved"
    return None


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


def check_url(url: str, guard: AddressGuard) -> str:
    """Refuse a URL that is malformed, not http(s) or outside the host list; return its host."""
    if not isinstance(url, str) or not url or _BAD_CHARS.search(url):
        raise UrlRefused("invalid_url", f"not a valid URL: {scrub_url(str(url))}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("invalid_url", f"not a valid URL: {scrub_url(url)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "none"
        raise UrlRefused("scheme_not_allowed", f"scheme {shown} is not allowed (http, https only)")
    host = parts.hostname
    if not host or port == 0:
        raise UrlRefused("invalid_url", f"not a valid URL: {scrub_url(url)}")
    guard.check_host(host)
    return host


def scrub_url(url: str, limit: int = 160) -> str:
    """A URL safe to show in a report: no credentials, no query (often a signature), bounded."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        text = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url
        if parts.query:
            text += "?…"
    except ValueError:
        text = _USERINFO.sub("", url)
    text = _USERINFO.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub_text(text: str) -> str:
    """Remove credentials from any URLs inside a free-text message."""
    return _USERINFO.sub("", text)


def _short(exc: BaseException) -> str:
    text = scrub_text(str(exc)) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
