"""The client's own address behind a reverse proxy (``LR_TRUSTED_PROXIES``).

Behind nginx every request comes from the proxy: attendance would record the proxy as where
each member watched from, the per-address limits would count the whole county as one
address, and /metrics would take everyone for this machine. When the peer is a trusted
proxy, the client is the right-most address in ``X-Forwarded-For`` that is not itself a
trusted proxy (the ones to its left are what the client claimed, and anyone can claim), and
the scheme is ``X-Forwarded-Proto``. From any other peer both headers are ignored."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from server.config import Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def trusted(address: str | None, proxies: tuple[Network, ...]) -> bool:
    found = _address(address or "")
    return found is not None and any(found in net for net in proxies)


def client_of(forwarded_for: list[str], proxies: tuple[Network, ...]) -> str | None:
    """The client address from the ``X-Forwarded-For`` headers (in order), None when they
    hold none that is well formed."""
    hops = [h for header in forwarded_for for h in header.split(",")]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return None  # a malformed hop: what lies left of it cannot be read
        if not any(found in net for net in proxies):
            return str(found)
    return None


def forwarded_middleware(proxies: tuple[Network, ...]):
    @web.middleware
    async def forwarded(request: web.Request, handler):
        if proxies and trusted(request.remote, proxies):
            changes: dict = {}
            client = client_of(request.headers.getall("X-Forwarded-For", []), proxies)
            if client is not None:
                changes["remote"] = client
            proto = request.headers.get("X-Forwarded-Proto", "").strip().lower()
            if proto in ("http", "https"):
                changes["scheme"] = proto
            if changes:
                request = request.clone(**changes)
        return await handler(request)

    return forwarded
