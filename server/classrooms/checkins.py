"""What a classroom does during a lecture: report its headcount, check members of its own
township in, find them in the roster, list whom it has checked in. One function each, for the
room's page and anything else; no HTTP here."""

from __future__ import annotations

import asyncio
from typing import Protocol

from server.attendance.events import Checkin, Event, Headcount
from server.attendance.report_cache import Reports
from server.refusals import Forbidden, Invalid, NotFound
from server.store import Member, Session, Store

ROSTER_MATCHES = 20  # what one search shows; a narrower search finds the rest


class Record(Protocol):
    """Where a room's events go: the attendance tracker (its ``append`` answers a ``seq``)."""

    async def append(self, session: str, event: Event) -> object: ...


def township_of(session: Session, room: str) -> str:
    """The township whose members the room may check in; Forbidden for a room code that is
    not one of the session's."""
    township = session.room_townships.get(room)
    if township is None:
        raise Forbidden("this room is not one of the session's classrooms")
    return township


async def headcount(store: Store, record: Record, session: Session, room: str, count: int) -> int:
    """The people in the room now: a ledger event (the audit reads it), the store's copy for
    the lecturer's wall. Returns the event's ``seq``."""
    township_of(session, room)
    store.record_headcount(session.id, room, count)
    done = await record.append(session.id, Headcount(room, count))
    return done.seq  # type: ignore[attr-defined]


async def check_in(
    store: Store, record: Record, session: Session, room: str, member_id: str
) -> tuple[Member, int]:
    """Check a member of the room's own township in. Anyone else is answered as an unknown
    id is, without a name (it had been a county-wide name lookup)."""
    township = township_of(session, room)
    member = store.member(member_id) if member_id else None
    if member is None or member.township != township:
        raise NotFound("no such member in this township's roster")
    done = await record.append(session.id, Checkin(room, member_id))
    return member, done.seq  # type: ignore[attr-defined]


async def checked_in(reports: Reports, store: Store, session: Session, room: str) -> list[Member]:
    """The members a room has checked in, each once, in the order of their first check-in,
    with their names: what its page lists again after a reload. The session's report is
    brought up to date on a worker thread (after a restart, from its first event)."""
    township_of(session, room)

    def entries() -> list[tuple[str, int]]:
        fold = reports.refresh(session.id)
        with fold.lock:
            return list(fold.checkins.get(room, ()))

    ids = list(dict.fromkeys(member for member, _ in await asyncio.to_thread(entries)))
    names = store.member_names(ids)
    return [Member(m, names.get(m, ""), "") for m in ids]


def search_roster(store: Store, session: Session, room: str, text: str) -> tuple[str, list, bool]:
    """Members of the room's township whose name contains ``text`` or whose member id starts
    with it, for someone who does not know their member id: (township, at most
    ``ROSTER_MATCHES`` of them, whether there are more)."""
    township = township_of(session, room)
    text = text.strip()
    if not 1 <= len(text) <= 32:
        raise Invalid("q is 1 to 32 characters: part of a name or a member id's start")
    found = store.search_members(township, text, ROSTER_MATCHES + 1)
    return township, found[:ROSTER_MATCHES], len(found) > ROSTER_MATCHES
