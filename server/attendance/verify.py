"""Verify a session's record: the hash chain, every signed checkpoint, and a receipt kept
elsewhere. Works on the server's database or on an exported JSON file alone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.attendance.ledger import Row, check_chain
from server.attendance.signing import Checkpoint, fingerprint, signature_valid


@dataclass
class Verdict:
    session: str
    ok: bool
    events: int
    head: str
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    checkpoints: int = 0
    receipt_checked: bool = False
    # events after the last valid signature: held by the chain alone, until the server signs
    # them (within a checkpoint interval while it runs)
    unsigned: int = 0

    def summary(self) -> str:
        if self.ok:
            extra = ", receipt matches" if self.receipt_checked else ""
            tail = f", the last {self.unsigned} not signed yet" if self.unsigned else ""
            return (
                f"OK: session {self.session}, {self.events} events, head {self.head[:16]}…, "
                f"{self.checkpoints} signed checkpoints valid{extra}{tail}"
            )
        return (
            f"FAILED: session {self.session}, first bad sequence number {self.first_bad_seq}: "
            + "; ".join(self.problems)
        )

    def as_json(self) -> dict:
        return {
            "session": self.session,
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "first_bad_seq": self.first_bad_seq,
            "problems": self.problems,
            "checkpoints": self.checkpoints,
            "receipt_checked": self.receipt_checked,
            "unsigned": self.unsigned,
        }


def verify(
    session: str,
    rows: Iterable[Row],
    checkpoints: list[Checkpoint],
    key: Ed25519PublicKey,
    receipt: Checkpoint | None = None,
) -> Verdict:
    """``rows`` in order, read once (a long lecture's millions are never all held): the
    chain is recomputed, and the hashes at the signed sequence numbers kept for the
    signatures."""
    signed = list({(c.seq, c.final, c.signature): c for c in checkpoints}.values())
    if receipt is not None:
        signed.append(receipt)
    wanted = {c.seq for c in signed}
    hashes: dict[int, str] = {}
    first: list[int] = []  # the first sequence number read
    last = 0

    def watched() -> Iterator[Row]:
        nonlocal last
        for r in rows:
            if not first:
                first.append(r.seq)
            last = r.seq
            if r.seq in wanted:
                hashes[r.seq] = r.hash
            yield r

    events = watched()
    chain = check_chain(events, session)
    for _ in events:  # the chain broke early: the signed hashes after it are still read
        pass
    verdict = Verdict(session, chain.ok, chain.events, chain.head)

    def bad(seq: int | None, problem: str) -> None:
        verdict.ok = False
        verdict.problems.append(problem)
        if seq is not None and (verdict.first_bad_seq is None or seq < verdict.first_bad_seq):
            verdict.first_bad_seq = seq

    if not chain.ok:
        bad(chain.first_bad_seq, chain.reason)
    fp = fingerprint(key)
    vouched = 0  # the last sequence number a valid signature covers
    for cp in sorted(signed, key=lambda c: c.seq):
        label = "receipt" if cp is receipt else "checkpoint"
        if cp.session != session:
            bad(None, f"{label} is for session {cp.session}")
            continue
        if cp.key_fp != fp or not signature_valid(cp, key):
            bad(None, f"{label} at event {cp.seq} has no valid signature by key {fp}")
            continue
        if cp is not receipt:
            verdict.checkpoints += 1
        if hashes.get(cp.seq) == cp.head:
            vouched = max(vouched, cp.seq)
        if cp.seq not in hashes:
            bad(cp.seq, f"event {cp.seq}, signed in a {label}, is missing")
        elif hashes[cp.seq] != cp.head:
            # Without the original events a rewrite can only be bounded: it may start at
            # the first event at or before the signed one.
            bad(
                min(first[0], cp.seq) if first else cp.seq,
                f"the events up to {cp.seq} differ from those signed in the {label}"
                " (the ledger was rewritten)",
            )
    if receipt is not None:
        verdict.receipt_checked = True
    verdict.unsigned = max(last - vouched, 0)
    return verdict
