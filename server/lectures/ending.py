"""Ending a lecture and changing its credit rule afterwards: one function each, composing
the parts (the live media, the attendance record, the report, the training hours, the replay
job) in the order the record needs. No HTTP here; refusals are server/refusals.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.attendance.report_cache import Reports, session_report
from server.attendance.tracker import Attendance
from server.config import Config
from server.lectures.live import LiveSessions
from server.lectures.replays import ReplayJobs, recordings_of
from server.lectures.rollcalls import RollCalls
from server.lectures.service import CreditRule, set_credit_rule
from server.programme.hours import credit_session
from server.programme.store import ProgrammeStore
from server.refusals import Conflict
from server.store import Session, Store


class LectureParts(Protocol):
    """What ending a lecture touches (the app's shared state has each)."""

    config: Config
    store: Store
    live: LiveSessions
    attendance: Attendance
    reports: Reports
    programme: ProgrammeStore
    replays: ReplayJobs
    rollcalls: RollCalls


@dataclass(frozen=True)
class Ended:
    receipt: dict | None  # the signed receipt of the session's final entry
    replay: str | None  # the replay job's state, when there is a recording to make it from


async def end_lecture(parts: LectureParts, session: Session, by: str) -> Ended:
    """Close every connection, write the end event and sign the final receipt, credit the
    members' hours from the report, and queue the replay. The media goes first, so that no
    heartbeat lands after the end event it would contradict."""
    sid = session.id
    if session.status == "ended":
        raise Conflict("this session has already ended")
    await parts.live.end(sid)
    parts.rollcalls.ended(sid)
    receipt = await parts.attendance.end_session(sid, by)
    report = await session_report(parts.reports, parts.store, session)
    credit_session(parts.programme, sid, report)
    replay = None
    if recordings_of(parts.config.media_root, sid):
        replay = parts.replays.schedule(sid).state
    return Ended(receipt, replay)


async def change_rule(
    parts: LectureParts, session: Session, rule: CreditRule, by: str
) -> int | None:
    """Make ``rule`` the session's (a ledger event). After the lecture, its members' hours
    are worked out again: returns how many are credited now; None when nothing changed or
    the lecture has not ended."""
    if not await set_credit_rule(parts.store, parts.attendance, session.id, rule, by):
        return None
    if session.status != "ended":
        return None
    report = await session_report(parts.reports, parts.store, session)
    credit_session(parts.programme, session.id, report)
    return sum(1 for r in report.participants.values() if r.credited)
