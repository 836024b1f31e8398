"""Verify an exported attendance JSON with nothing but the file and the server's public key."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.attendance.ledger import Row
from server.attendance.signing import checkpoint_from
from server.attendance.verify import Verdict, verify


def verify_export(doc: dict, key: Ed25519PublicKey) -> Verdict:
    session = doc.get("session", "")
    try:
        rows = [
            Row(session, e["seq"], e["at_ms"], e["kind"], e["data"], "", e["hash"])
            for e in doc["events"]
        ]
    except (KeyError, TypeError):
        return Verdict(session, False, 0, "", None, ["the file has no readable events"])
    # the export carries each event's hash; the previous hash is the one before it
    prev = "0" * 64
    linked = []
    for r in rows:
        linked.append(Row(r.session, r.seq, r.at_ms, r.kind, r.data, prev, r.hash))
        prev = r.hash
    checkpoints = [checkpoint_from(c) for c in doc.get("checkpoints") or []]
    receipt = checkpoint_from(doc["receipt"]) if doc.get("receipt") else None
    return verify(session, linked, checkpoints, key, receipt)
