"""Training hours (学时) a lecture earns: the credited members of an approved training's
session get its course's class hours, in the year it was given. No HTTP here: the routes
call these at a lecture's end, on a change of its credit rule, and after a replay."""

from __future__ import annotations

import datetime

from server.attendance.report import SessionReport
from server.programme.store import ProgrammeStore


def credit_session(programme: ProgrammeStore, sid: str, report: SessionReport) -> int:
    """Credited members of an approved training's session earn its course's class hours (at
    its end, and again when an admin changes its credit rule); how many now hold them."""
    training = programme.training_of_session(sid)
    if training is None:
        return 0
    course = programme.course(training.course_id)
    members = [r.member_id for r in report.participants.values() if r.credited and r.member_id]
    return programme.set_credits(sid, course.class_hours, members, lecture_year(report))


def credit_member(
    programme: ProgrammeStore, sid: str, report: SessionReport, member_id: str
) -> bool:
    """After the lecture, a member whose replay made up the time earns the hours then
    (``report``: theirs alone will do). False if they had them, or have not made it."""
    mine = report.participants.get(f"member:{member_id}")
    if report.end_ms is None or mine is None or not mine.credited:
        return False
    training = programme.training_of_session(sid)
    if training is None:
        return False
    course = programme.course(training.course_id)
    return programme.add_credit(sid, course.class_hours, member_id, lecture_year(report))


def lecture_year(report: SessionReport) -> int:
    """The year a lecture's hours count in: the year it was given."""
    when = report.end_ms or report.start_ms
    if when is None:
        return datetime.date.today().year
    return datetime.datetime.fromtimestamp(when / 1000).year
