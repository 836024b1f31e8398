"""The ICE servers a caller is given, with TURN credentials of its own when the relay shares
a secret with the TURN server (coturn's ``use-auth-secret``, the "TURN REST" scheme).

Such a credential names its expiry: ``username = "<unix expiry>:<who>"`` and ``credential =
base64(HMAC-SHA1(secret, username))``; coturn checks both, so a leaked one stops working at
its expiry, and each caller's is its own. Static credentials (``turn:user:pass@host``) are
handed only to authenticated callers too, but they are one for all and never expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from server.config import Config, IceServer


def turn_credential(secret: str, who: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for ``ttl_s`` seconds, for coturn's static-auth-secret."""
    expiry = int(time.time() if now is None else now) + ttl_s
    username = f"{expiry}:{who}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


def ice_servers_for(config: Config, who: str, now: float | None = None) -> list[IceServer]:
    """What ``who`` (an opaque name, in the TURN server's logs) may use: each configured
    server, a TURN one with a credential minted for ``who`` when there is a shared secret."""
    out = []
    for server in config.ice_servers:
        if (
            config.turn_secret
            and server.urls.startswith(("turn:", "turns:"))
            and not server.username
        ):
            username, credential = turn_credential(config.turn_secret, who, config.turn_ttl_s, now)
            server = IceServer(server.urls, username, credential)
        out.append(server)
    return out


def public_ice_servers(config: Config) -> list[IceServer]:
    """What an unauthenticated caller (a WHIP/WHEP ``OPTIONS``) may learn: no credential."""
    return [
        s
        for s in config.ice_servers
        if not s.username and not s.urls.startswith(("turn:", "turns:"))
    ]


def ice_servers_of(config: Config, signer, claims) -> list[IceServer]:
    """``ice_servers_for`` an authenticated caller: its TURN name is opaque (a member id or
    a room code stays out of the TURN server's logs), and each open-link phone's is its own."""
    if claims.subject:
        who = signer.opaque(f"{claims.role}:{claims.subject}")
    else:
        who = secrets.token_hex(8)
    return ice_servers_for(config, f"{claims.role}-{who}")
