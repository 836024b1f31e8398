"""Creating a lecture and setting its credit rule: one function each, for the API, the CLI
and an approved order (点单式) alike. No HTTP here; refusals are server/refusals.py's.

The credit rule lives in the session's ledger, as ``policy`` events: reports read it from
there, and an audit shows every change. The store's two columns are a cache of the newest,
written after the event, for the pages that list sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from server.attendance.events import Event, Policy
from server.config import DEFAULT_THRESHOLD
from server.refusals import Invalid, whole_number
from server.store import Classroom, Session, Store

VIDEO_CODECS = ("H264", "VP8")


@dataclass(frozen=True)
class CreditRule:
    """The share of the lecture to watch (in hundredths, 0.01-1), whether replay counts, how
    many roll calls (点名) a member answers (of those held), and whether replay still earns
    for a member who missed them."""

    threshold: float = DEFAULT_THRESHOLD
    replay_credit: bool = True
    rollcalls_required: int = 0
    replay_without_rollcalls: bool = False


MAX_ROLLCALLS = 20  # a lecture's roll calls, planned or started


DEFAULT_RULE = CreditRule()


class SignedRecord(Protocol):
    """Where a lecture's events go, each signed at once: the server's attendance tracker, or
    server/attendance/direct.py for a command that writes the ledger file itself."""

    async def append_signed(self, session: str, event: Event) -> object: ...


def credit_rule(data: dict, current: CreditRule = DEFAULT_RULE) -> CreditRule:
    """A rule from ``credit_threshold`` and ``replay_credit`` in ``data`` (a request body, the
    CLI's flags), ``current`` for what it leaves out."""
    threshold = data.get("credit_threshold")
    threshold = current.threshold if threshold is None else threshold
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.01 <= threshold <= 1
        or abs(threshold * 100 - round(threshold * 100)) > 1e-6
    ):
        raise Invalid("credit_threshold is the share of the lecture to watch, 0.01-1 (0.8 is 80%)")
    replay_credit = data.get("replay_credit", current.replay_credit)
    if not isinstance(replay_credit, bool):
        raise Invalid("replay_credit is a boolean")
    required = whole_number(
        data.get("rollcalls_required", current.rollcalls_required),
        0,
        MAX_ROLLCALLS,
        f"rollcalls_required is a whole number from 0 to {MAX_ROLLCALLS}",
    )
    without = data.get("replay_without_rollcalls", current.replay_without_rollcalls)
    if not isinstance(without, bool):
        raise Invalid("replay_without_rollcalls is a boolean")
    return CreditRule(round(threshold * 100) / 100, replay_credit, required, without)


def current_rule(store: Store, session: str) -> CreditRule:
    """The session's rule, from the store's cache of its newest policy event."""
    required, without = store.rollcall_rule(session)
    return CreditRule(
        store.credit_threshold(session), store.replay_credit(session), required, without
    )


async def set_credit_rule(
    store: Store, record: SignedRecord, session: str, rule: CreditRule, by: str
) -> bool:
    """Record ``rule`` as the session's, when it is not the one it has (a new session has the
    default): the ledger event first, signed at once (it decides who is credited), then the
    cache. Returns whether it changed."""
    if current_rule(store, session) == rule:
        return False
    policy = Policy(
        by,
        round(rule.threshold * 100),
        rule.replay_credit,
        rule.rollcalls_required,
        rule.replay_without_rollcalls,
    )
    await record.append_signed(session, policy)
    store.set_credit_threshold(session, rule.threshold)
    store.set_replay_credit(session, rule.replay_credit)
    store.set_rollcall_rule(session, rule.rollcalls_required, rule.replay_without_rollcalls)
    return True


async def create_lecture(
    store: Store,
    record: SignedRecord,
    title: str,
    by: str,
    *,
    rooms: Sequence[Classroom] | None = None,
    video_codec: str = "H264",
    recorded: bool = True,
    rule: CreditRule = DEFAULT_RULE,
    rollcalls: Sequence[int] = (),
) -> Session:
    """A new lecture with a room (its own code) per classroom of ``rooms``, by default the
    township schools (server/classrooms/directory.choose picks others); recorded unless
    told not to, its credit rule in its ledger when it is not the default; ``rollcalls``:
    when its planned roll calls are held, in seconds after it goes live."""
    codec = video_codec.upper()
    if codec not in VIDEO_CODECS:
        raise Invalid("video_codec is VP8 or H264")
    if not title.strip():
        raise Invalid("title is required")
    session = store.create_session(title, rooms, codec)
    if not recorded:
        store.set_record(session.id, False)
    if rollcalls:
        store.set_rollcall_plan(session.id, rollcalls)
    await set_credit_rule(store, record, session.id, rule, by)
    return session
