"""A requests Session whose connections only ever reach an address the SSRF guard vetted.

Each new connection resolves its host once through `AddressGuard.vet` (which refuses the host
if ANY address is blocked) and connects to those addresses in turn, so a rebinding DNS server
gets no second lookup to answer differently. TLS still sends SNI for the host name and verifies
the certificate against it, and the Host header still names it.

Built on urllib3's and requests' public API only: a connection class's public `connect`,
`request`, `host` and `server_hostname`, a pool's `ConnectionCls`, a PoolManager's
`pool_classes_by_scheme` and requests' `HTTPAdapter.init_poolmanager`.
"""

from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from collage.engine.url_guard import AddressGuard, UrlRefused
from collage.engine.watchdog import note_connection

if TYPE_CHECKING:
    from http.cookiejar import Cookie
    from urllib.request import Request


class _Pinned(HTTPConnection):
    """Mixed into urllib3's connections: every connect goes through the address guard.

    `host` is the name while the request is written (Host header, TLS name) and the vetted
    address only while the socket connects. It subclasses HTTPConnection so that its methods
    are checked against what they extend; in the HTTPS class the method order is still this
    mixin, HTTPSConnection, then HTTPConnection."""

    guard: ClassVar[AddressGuard]  # set by guarded_pool_classes

    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._name = host  # as urllib3 gives it: a trailing dot (an FQDN) kept for DNS

    def connect(self) -> None:
        note_connection(self)  # the attempt's watch cuts a dripped handshake on this one
        addresses = self.guard.vet(self._name, self.port)  # raises UrlRefused before a socket
        try:
            self._connect_to(addresses)
        finally:
            self.host = self._name

    def _connect_to(self, addresses: list[str]) -> None:
        """Connect to the first address that takes it (an IPv6 one may be unreachable)."""
        *others, last = addresses
        for address in others:
            self.host = address
            try:
                super().connect()
            except NewConnectionError:  # refused or unreachable; a timeout is not retried
                continue
            return
        self.host = last
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        note_connection(self)  # a reused connection: the watch must cut this one
        super().request(*args, **kwargs)


class PinnedHTTPConnection(_Pinned, HTTPConnection):
    pass


class PinnedHTTPSConnection(_Pinned, HTTPSConnection):
    """The socket goes to the vetted IP; TLS still sends SNI and verifies for the host name."""

    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        if self.server_hostname is None:
            self.server_hostname = host


def guarded_pool_classes(guard: AddressGuard) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes (for `PoolManager.pool_classes_by_scheme`) guarded by `guard`."""

    class GuardedHTTPConnection(PinnedHTTPConnection):
        pass

    class GuardedHTTPSConnection(PinnedHTTPSConnection):
        pass

    GuardedHTTPConnection.guard = GuardedHTTPSConnection.guard = guard

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        self._guarded_pools = guarded_pool_classes(guard)  # before super() builds the manager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._guarded_pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy would make the connection (and the address check) somebody else's.
        raise UrlRefused("address_blocked", "proxies are not used for cover downloads")


class _NoCookies(DefaultCookiePolicy):
    # Covers need no cookies, and a jar shared by all threads and hosts is state we don't want.
    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


def guarded_session(
    guard: AddressGuard, pool_size: int, headers: dict[str, str]
) -> requests.Session:
    """A Session for http(s) through `guard`: no retries, proxies, .netrc or cookies."""
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc credentials from the environment
    session.cookies.set_policy(_NoCookies())
    session.headers.update(headers)
    adapter = GuardedAdapter(
        guard, pool_connections=max(pool_size, 4), pool_maxsize=pool_size, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
