"""Which of a peer's ICE candidates the relay will try (SDP text in, SDP text out)."""

from __future__ import annotations

import ipaddress


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
