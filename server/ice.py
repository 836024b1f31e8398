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

from media.candidates import restrict_peer_networks
from media.fastpath import bound_server_candidates, restrict_host_addresses
from server.config import Config, IceServer

# How long the relay's own peers wait for their STUN/TURN servers' candidates before answering
# with their host candidates: an allocation from a TURN server that answers takes two round
# trips (milliseconds next to the relay; 1 s leaves room for a lost request, retried after
# 0.5 s), and aioice's own 5 s held every WHIP/WHEP answer back when it did not answer.
SERVER_CANDIDATE_WAIT_S = 1.0


def gather_as_configured(config: Config) -> None:
    """This process's ICE gathering as the settings say (aioice's are process-wide). With no
    host address of its own (``LR_ICE_HOSTS=none``) a relayed candidate is the relay's only
    one, so it waits for it as long as aioice does."""
    restrict_host_addresses(config.ice_host_addresses)
    restrict_peer_networks(config.ice_peer_networks)
    bound_server_candidates(None if config.ice_host_addresses == () else SERVER_CANDIDATE_WAIT_S)


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
        who = signer.opaque(claims.participant)
    else:
        who = secrets.token_hex(8)
    return ice_servers_for(config, f"{claims.role}-{who}")
