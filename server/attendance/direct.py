"""A command's own hand on the ledger file (the CLI, beside or without a running server).

What it appends it signs at once, as the server's tracker does at each checkpoint: the
tracker does not see what another process appends, and a chain alone cannot show its newest
event cut off."""

from __future__ import annotations

from server.attendance.events import Event
from server.attendance.ledger import Appended, Ledger, now_ms
from server.attendance.signing import CheckpointLog, LedgerKey, sign_head


class DirectLedger:
    """``ledger`` with the signing key and the checkpoint log; a
    :class:`server.lectures.service.SignedRecord` for the services."""

    def __init__(self, ledger: Ledger, key: LedgerKey, log: CheckpointLog) -> None:
        self.ledger, self.key, self.log = ledger, key, log

    def append_signed_now(self, session: str, event: Event) -> Appended:
        """Append ``event`` and sign the session's head."""
        done = self.ledger.append_now(session, event)
        checkpoint = sign_head(self.key, self.ledger, session, now_ms())
        assert checkpoint is not None  # the event just appended is its head
        self.ledger.save_checkpoint(checkpoint)
        self.log.append(checkpoint)
        return done

    async def append_signed(self, session: str, event: Event) -> Appended:
        return self.append_signed_now(session, event)
