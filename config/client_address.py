"""The client's address, the one every per-address limit counts by.

Behind a reverse proxy every request arrives from the proxy's address, so a limit per address
would throttle everyone at once. ``TRUSTED_PROXIES`` names the proxies (addresses or networks)
whose ``X-Forwarded-For`` is believed: the client is the right-most address in that header that
is not itself a trusted proxy. A forwarded header from anyone else is ignored, so a client cannot
choose its own address. The REST limits, the login and sign-up throttles and the streams' failed-
auth limits all call this, so one setting decides for all of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def trusted_networks() -> tuple[_Network, ...]:
    return _networks(tuple(settings.TRUSTED_PROXIES))


def _is_trusted(address: str, networks: Sequence[_Network]) -> bool:
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _normalised(address: str) -> str | None:
    candidate = address.strip()
    if candidate.startswith("[") and "]" in candidate:  # "[::1]:1234" from some proxies
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # "10.0.0.1:1234"
        candidate = candidate.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def client_address(*, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
    """The client's address given the connection's peer and its ``X-Forwarded-For`` values."""
    if not peer:
        return UNKNOWN
    networks = trusted_networks()
    if not _is_trusted(peer, networks):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _normalised(hop)
        if address is None:
            # A garbled hop was written by someone before the trusted chain: stop believing.
            break
        if not _is_trusted(address, networks):
            return address
    return peer


def request_client_address(request: HttpRequest) -> str:
    """The client's address of a Django (WSGI) request."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address(
        peer=request.META.get("REMOTE_ADDR") or None, forwarded_for=(forwarded,) if forwarded else ()
    )


def scope_client_address(scope: dict[str, Any]) -> str:
    """The client's address of an ASGI scope (read it before the headers are dropped)."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded = [
        value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"
    ]
    return client_address(peer=peer, forwarded_for=forwarded)
