"""The report cache: each session's fold kept and brought up to date as the ledger writes,
so a report asked for during or after a lecture folds only what is new (the API's, the
CLI's); what a report takes from the store beside the ledger."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

from server.attendance.ledger import Ledger
from server.attendance.report import ReportFold, SessionReport
from server.attendance.writer import Appended
from server.store import Member, Session, Store


class Reports:
    """The folds of the sessions reported, refreshed or followed last (up to ``keep``), each
    brought up to date with only the events appended since: a live session's fold follows the
    ledger's appends (``follow``), and what it could not follow is read in by ``refresh``
    (before each report, and every checkpoint interval in the background, app.py). Safe to
    use from worker threads (reports are built off the event loop)."""

    def __init__(self, ledger: Ledger, keep: int = 16) -> None:
        self.ledger = ledger
        self.keep = keep
        self._folds: OrderedDict[str, ReportFold] = OrderedDict()
        self._lock = threading.Lock()

    def report(self, session: str, **options) -> SessionReport:
        """``options``: those of ``ReportFold.report``."""
        fold = self.refresh(session)
        with fold.lock:
            return fold.report(**options)

    def follow(self, batch: list[tuple], results: list[Appended]) -> None:
        """Fold in events as the ledger makes them durable (its ``on_durable``, on the event
        loop): ``batch`` as the ledger queued them, ``(session, event, at_ms)``, and
        what each became. The events are in hand: nothing is read back or decoded, and a live
        session's fold is up to date when the lecture ends.

        Only in order: a fold takes an event that follows its last one, and a new session's
        fold begins at its first event. Anything else (a fold busy in a report on a worker
        thread, events appended elsewhere: the CLI, the cluster's stream) is left for the
        next ``refresh``, which reads from the fold's last event on."""
        held: ReportFold | None = None  # the fold of the run of one session's events
        current = None
        try:
            for (session, event, _), done in zip(batch, results, strict=True):
                if session != current:
                    if held is not None:
                        held.lock.release()
                        held = None
                    current = session
                    fold = self._folds.get(session)
                    if fold is None and done.seq == 1:
                        fold = self._fold(session)
                    if fold is not None and fold.lock.acquire(blocking=False):
                        held = fold
                if held is not None and done.seq == held.seq + 1:
                    held.add_event(done.seq, done.at_ms, event)
        finally:
            if held is not None:
                held.lock.release()

    def alone(self, session: str, participant: str, **options) -> SessionReport:
        """The session's report with one participant's record alone, brought up to date:
        during and after a lecture thousands of members each read their own, while replays
        append to the session's ledger; the whole report was built for every one of them."""
        fold = self.refresh(session)
        with fold.lock:
            return fold.report(only=participant, **options)

    def refresh(self, session: str, paced: bool = False) -> ReportFold:
        """The session's fold, with the events since last time folded in (a live session's
        now and then, and before each report). ``paced``: in the background, a pause after
        every few hundred events (see ``paced_rows``)."""
        fold = self._fold(session)
        with fold.lock:
            rows = self.ledger.scan(session, fold.seq)
            fold.feed(paced_rows(rows) if paced else rows)
        return fold

    def folded(self, session: str) -> int:
        """The sequence number the session's fold has taken in (0: none kept)."""
        fold = self._folds.get(session)
        return fold.seq if fold is not None else 0

    def _fold(self, session: str) -> ReportFold:
        with self._lock:
            fold = self._folds.pop(session, None) or ReportFold(session)
            self._folds[session] = fold
            while len(self._folds) > self.keep:
                self._folds.popitem(last=False)
        return fold


PACE_EVERY = 400  # events folded between two pauses (~2 ms of the interpreter's lock)
PACE_PAUSE_S = 0.004


def paced_rows(
    rows: Iterator[tuple], every: int = PACE_EVERY, pause_s: float = PACE_PAUSE_S
) -> Iterator[tuple]:
    """``rows``, with a pause after every ``every`` of them.

    A fold on a worker thread shares the interpreter lock with the event loop, half and half
    while both want it: a minute of a live lecture's events (every minute, for each live
    session) took half the loop's time for as long as it ran, and heartbeats queued
    (bench_attendance, docs/DECISIONS.md). Paced, it takes at most about a third, over
    longer."""
    for i, row in enumerate(rows, 1):
        yield row
        if i % every == 0:
            time.sleep(pause_s)


def report_options(store: Store, session: Session, roster: list[Member] | None = None) -> dict:
    """What a session's report takes from the store (read where the store is used: the event
    loop's thread), beside the ledger; ``roster``: the members, when the caller has read them
    already."""
    members = store.members() if roster is None else roster
    return {
        "threshold": store.credit_threshold(session.id),
        "names": {m.member_id: (m.name, m.township, m.phone) for m in members},
        "rooms": session.room_names,
        "replay_credit": store.replay_credit(session.id),
    }


async def session_report(
    reports: Reports, store: Store, session: Session, roster: list[Member] | None = None, **options
) -> SessionReport:
    """The session's report, folded on a worker thread: a long session's first report is
    seconds of work that other sessions' heartbeats should not wait behind. ``roster``: the
    members, when the caller has read them already (else read on a worker thread too);
    ``options``: more of ``ReportFold.report``'s (``now_ms``)."""
    if roster is None:
        roster = await asyncio.to_thread(store.roster_apart)
    options |= report_options(store, session, roster)
    return await asyncio.to_thread(reports.report, session.id, **options)


def report_for(store: Store, ledger: Ledger, session: Session) -> SessionReport:
    """A session's report, folded from its first event (the CLI's: one report per run)."""
    return Reports(ledger).report(session.id, **report_options(store, session))
