"""The SSRF policy of the local tools: the deployed one, plus the loopback network.

The local tools serve covers from 127.0.0.1 themselves (the demo, the tests), so they permit
loopback addresses, and only when asked (`--allow-loopback`). The deployed functions build
their AddressGuard from the template and never permit any special-use network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from collage.engine.url_guard import AddressGuard

LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def local_guard(allow_loopback: bool, allowed_host_suffixes: Sequence[str] = ()) -> AddressGuard:
    permitted = LOOPBACK_NETWORKS if allow_loopback else ()
    return AddressGuard(tuple(allowed_host_suffixes), permitted)
