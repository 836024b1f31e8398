"""Which of a peer's ICE candidates the relay will try: those its offer names (SDP text in,
SDP text out) and those it learns from the peer's checks (peer-reflexive)."""

from __future__ import annotations

import ipaddress

import aioice.ice

_peer_networks: list | None = None  # restrict_peer_networks; None: any address
_request_received = aioice.ice.Connection.request_received


def restrict_peer_networks(allowed: tuple[str, ...] | None) -> None:
    """Learn peer-reflexive candidates only inside these networks (``LR_ICE_PEER_NETWORKS``,
    as ``filter_candidates`` applies it to the offer's). Process-wide, as aioice is, like
    ``restrict_host_addresses``; a check from an address the connection already knows (a
    candidate it was given) is never refused."""
    global _peer_networks
    _peer_networks = [ipaddress.ip_network(n) for n in allowed] if allowed else None


def _outside(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not any(ip in n for n in _peer_networks)


def _checked_request(self, message, addr, protocol) -> None:
    """aioice's Connection.request_received, but a check from an address outside the allowed
    networks that no candidate names is dropped unanswered: aioice would answer it and learn
    the address as a peer-reflexive candidate, and then send media there."""
    if _peer_networks is not None and _outside(addr[0]):
        known = any(
            c._network_host == addr[0] and c.port == addr[1] for c in self._remote_candidates
        )
        if not known:
            return
    _request_received(self, message, addr, protocol)


aioice.ice.Connection.request_received = _checked_request


def filter_candidates(sdp: str, allowed: tuple[str, ...] | None) -> str:
    """Drop ``a=candidate`` lines the relay must not contact.

    mDNS (``.local``) candidates are always dropped: resolving them needs multicast on the
    LAN, and the peer is reached through its peer-reflexive address instead. So are lines
    not shaped like a candidate (``... <address> <port> typ <type>``), whose address can't
    be told. With ``allowed`` networks (e.g. ``("127.0.0.0/8",)`` in tests), candidates
    outside them are dropped too.
    """
    networks = [ipaddress.ip_network(n) for n in allowed] if allowed else None
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 8 or parts[6] != "typ":
                continue  # not a candidate: its address can't be told, so it is not tried
            address = parts[4]
            if address.endswith(".local"):
                continue
            if networks is not None:
                try:
                    ip = ipaddress.ip_address(address)
                except ValueError:
                    continue
                if not any(ip in n for n in networks):
                    continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"
