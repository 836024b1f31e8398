"""Roll calls (点名) during a lecture: proof that a person, not a phone in a pocket, is there.

The lecturer starts one (or the lecture's plan does, at random times set when it was made);
every identified member's page shows a large 到 button for the call's window, a classroom
answers with its headcount then. Each call and each answer is an event in the session's
ledger; whether an answer counts (in time, on a connection receiving media) is the report's
to decide from the ledger (server/attendance/report.py), so nothing here is trusted beyond
what it records. No HTTP here; refusals are server/refusals.py's.

What is open is kept in memory: a restart closes an open call (its answers so far stay in
the ledger), as it ends a turn on the floor. A plan's call that was due while the server was
down is held when it comes back, if the lecture is still live.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.attendance.events import Event, RollAnswer, RollCall
from server.attendance.ledger import now_ms
from server.refusals import Conflict, Gone, Invalid, NotFound, whole_number
from server.store import Store

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 90
WINDOWS_S = (30, 600)  # the shortest and longest window a call may have
MAX_PLANNED = 20
PLAN_TICK_S = 1.0


class Record(Protocol):
    async def append(self, session: str, event: Event) -> object: ...


@dataclass
class Call:
    id: str
    session: str
    opened_ms: int
    window_s: int
    by: str
    answered: dict[str, int] = field(default_factory=dict)  # participant -> seq of its answer

    @property
    def closes_ms(self) -> int:
        return self.opened_ms + self.window_s * 1000

    def open_at(self, ms: int) -> bool:
        return ms <= self.closes_ms

    def closes_in_s(self, now: int) -> int:
        return max(0, round((self.closes_ms - now) / 1000))

    def as_json(self, now: int | None = None) -> dict:
        now = now_ms() if now is None else now
        members = sum(1 for p in self.answered if p.startswith("member:"))
        return {
            "id": self.id,
            "window_s": self.window_s,
            "closes_in_s": self.closes_in_s(now),
            "open": self.open_at(now),
            "answers": len(self.answered),
            "members": members,
            "rooms": len(self.answered) - members,
        }


def plan(count: object, from_minute: object, to_minute: object, rng=random) -> list[int]:
    """``count`` roll calls at random whole seconds between ``from_minute`` and ``to_minute``
    after the lecture goes live, at least a window apart where the span allows."""
    for value in (count, from_minute, to_minute):
        whole_number(
            value, 0, None, "a roll-call plan is whole numbers: count, from_minute, to_minute"
        )
    if not 1 <= count <= MAX_PLANNED:
        raise Invalid(f"a plan has 1 to {MAX_PLANNED} roll calls")
    if not 0 <= from_minute < to_minute <= 600:
        raise Invalid("from_minute < to_minute, within the first 600 minutes")
    low, high = from_minute * 60, to_minute * 60
    gap = min(DEFAULT_WINDOW_S * 2, (high - low) // count)
    times: list[int] = []
    for _ in range(200):  # random, spaced; a span too tight for the gap takes what it gets
        times = sorted(rng.sample(range(low, high), count)) if high - low >= count else []
        if all(b - a >= gap for a, b in zip(times, times[1:], strict=False)):
            break
    if len(times) != count:
        raise Invalid("the span is too short for that many roll calls")
    return times


class RollCalls:
    """The open roll call of each live lecture, and the plans' timer."""

    def __init__(self, store: Store, record: Record) -> None:
        self.store = store
        self.record = record
        self.held: dict[str, list[Call]] = {}  # session -> every call this run held
        self.listeners: list[Callable[[Call], None]] = []  # told when a call opens
        self._task: asyncio.Task | None = None

    async def start(self, session: str, by: str, window_s: int = DEFAULT_WINDOW_S) -> Call:
        """Open a roll call now; Conflict while another is open."""
        whole_number(
            window_s, *WINDOWS_S, f"window_s is whole seconds, {WINDOWS_S[0]} to {WINDOWS_S[1]}"
        )
        if self.current(session) is not None:
            raise Conflict("a roll call is open: wait for it to close")
        if len(self.held.get(session, ())) >= MAX_PLANNED * 2:
            raise Conflict("this lecture has held as many roll calls as it may")
        call_id = secrets.token_hex(4)
        done = await self.record.append(session, RollCall(call_id, by, window_s))
        call = Call(call_id, session, done.at_ms, window_s, by)  # type: ignore[attr-defined]
        self.held.setdefault(session, []).append(call)
        for listener in self.listeners:
            listener(call)
        return call

    def current(self, session: str, now: int | None = None) -> Call | None:
        """The session's open call, if one is (only its newest can be)."""
        held = self.held.get(session)
        if not held or not held[-1].open_at(now_ms() if now is None else now):
            return None
        return held[-1]

    async def answer(
        self, session: str, call_id: str, participant: str, peer: str, count: int = -1
    ) -> tuple[int, bool]:
        """Record ``participant``'s answer on its connection ``peer``: (the answer's seq,
        whether it was already answered). NotFound for a call this lecture never held here,
        Gone for one that has closed (nothing recorded)."""
        call = next((c for c in self.held.get(session, ()) if c.id == call_id), None)
        if call is None:
            raise NotFound("no such roll call in this lecture")
        if not call.open_at(now_ms()):
            raise Gone("this roll call has closed")
        seq = call.answered.get(participant)
        if seq is not None:
            return seq, True
        done = await self.record.append(session, RollAnswer(call_id, participant, peer, count))
        call.answered.setdefault(participant, done.seq)  # type: ignore[attr-defined]
        return call.answered[participant], False

    def ended(self, session: str) -> None:
        """The lecture ended: its calls are closed and forgotten."""
        self.held.pop(session, None)

    # -- the plans ---------------------------------------------------------------------------
    def begin(self) -> None:
        self._task = asyncio.ensure_future(self._plans())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _plans(self) -> None:
        while True:
            await asyncio.sleep(PLAN_TICK_S)
            try:
                await self.run_due()
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.exception("a planned roll call could not start")

    async def run_due(self, now_s: float | None = None) -> list[Call]:
        """Start each live lecture's planned call that is due (one a lecture at a time:
        another waits for the open one to close)."""
        now_s = time.time() if now_s is None else now_s
        started = []
        for session, due in self.store.planned_rollcalls().items():
            began = self.store.started_at(session)
            if began is None or now_s < began + due[0] or self.current(session) is not None:
                continue
            self.store.rollcall_done(session, due[0])
            started.append(await self.start(session, "plan"))
        return started


def plan_summary(store: Store, session: str) -> dict:
    """What the lecturer may know of the plan: how many, how many still to come (never
    when: a call announced in advance proves nothing)."""
    entries: Sequence[tuple[int, bool]] = store.rollcall_plan(session)
    return {"planned": len(entries), "to_come": sum(1 for _, done in entries if not done)}
