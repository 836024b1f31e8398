"""How log lines name a connection: never by its id, which is a capability.

Whoever knows a WHEP/WHIP resource id can address the connection (its DELETE, its mode), so
the id stays out of logs; a short digest still lets an operator follow one connection.
"""

from __future__ import annotations

import hashlib


def log_tag(peer_id: str) -> str:
    return hashlib.sha256(peer_id.encode()).hexdigest()[:10]
