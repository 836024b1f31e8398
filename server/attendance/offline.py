"""Verify an exported attendance JSON with nothing but the file and the server's public key."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.attendance.events import GENESIS
from server.attendance.exports import JSON_EVENTS_OPEN
from server.attendance.ledger import Row
from server.attendance.signing import checkpoint_from
from server.attendance.verify import Verdict, verify

EVENTS_CLOSE = ("]", "],")


class _Layout(Exception):
    """The file is not laid out an event per line (``json_chunks``)."""


def verify_export(doc: dict, key: Ed25519PublicKey) -> Verdict:
    """Verify an export already parsed."""
    events = doc.get("events")
    if not isinstance(events, list):
        return _unreadable(doc.get("session", ""))
    return _verify(doc.get("session", ""), events, doc, key)


def verify_export_file(path: Path, key: Ed25519PublicKey) -> Verdict:
    """Verify an export file. Laid out as the server writes it (an event per line), it is read
    twice a line at a time (the signatures, which follow the events, first): a long lecture's
    file is hundreds of megabytes, several gigabytes parsed whole. Any other layout of the
    same JSON is parsed whole."""
    try:
        head, tail = _head_and_tail(path)
        return _verify(head.get("session", ""), _events(path), tail, key)
    except (_Layout, ValueError, UnicodeDecodeError):
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return _unreadable("")
        return verify_export(doc, key) if isinstance(doc, dict) else _unreadable("")


def _head_and_tail(path: Path) -> tuple[dict, dict]:
    """What comes before the events (session, participants) and after them (checkpoints,
    receipt), skipping the events unparsed."""
    with open(path, encoding="utf-8") as f:
        head = _to_events(f)
        for line in f:
            if line.strip() in EVENTS_CLOSE:
                break
        else:
            raise _Layout
        before = "".join(head).rstrip().removesuffix(",")  # the comma before "events"
        return json.loads(before + "}"), json.loads("{" + f.read())


def _events(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        _to_events(f)
        for line in f:
            text = line.strip()
            if text in EVENTS_CLOSE:
                return
            if text:
                yield json.loads(text.removesuffix(","))


def _to_events(f) -> list[str]:
    """Read ``f`` up to the line that opens the events; the lines before it."""
    head: list[str] = []
    for line in f:
        if line.strip() == JSON_EVENTS_OPEN:
            return head
        head.append(line)
    raise _Layout


def _unreadable(session: str) -> Verdict:
    return Verdict(session, False, 0, "", None, ["the file has no readable events"])


def _verify(session: str, events: Iterable, signed: dict, key: Ed25519PublicKey) -> Verdict:
    """``signed``: the export's ``checkpoints`` and ``receipt``."""
    unreadable: list[bool] = []

    def rows() -> Iterator[Row]:
        # the export carries each event's hash; the previous hash is the one before it
        prev = GENESIS
        for e in events:
            try:
                row = Row(session, e["seq"], e["at_ms"], e["kind"], e["data"], prev, e["hash"])
            except (KeyError, TypeError):
                unreadable.append(True)
                return
            yield row
            prev = row.hash

    checkpoints = [checkpoint_from(c) for c in signed.get("checkpoints") or []]
    receipt = checkpoint_from(signed["receipt"]) if signed.get("receipt") else None
    verdict = verify(session, rows(), checkpoints, key, receipt)
    return _unreadable(session) if unreadable else verdict
