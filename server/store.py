"""SQLite storage for the embedded default: lecture sessions and their rooms, the classroom
directory, the roster, headcounts.

WAL mode so readers never block the writer; the database lives in the data directory.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server.config import DEFAULT_THRESHOLD
from server.files import private_file
from server.schema import upgrade

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'scheduled',
    video_codec TEXT NOT NULL DEFAULT 'H264',
    credit_threshold REAL NOT NULL DEFAULT {DEFAULT_THRESHOLD},
    record INTEGER NOT NULL DEFAULT 1,
    replay_credit INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS rooms (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    PRIMARY KEY (session_id, name)
);
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    township TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT 'other'
);
CREATE INDEX IF NOT EXISTS members_by_township ON members (township);
CREATE TABLE IF NOT EXISTS headcounts (
    session_id TEXT NOT NULL,
    room_code TEXT NOT NULL,
    count INTEGER NOT NULL,
    at REAL NOT NULL
);
"""

# The 15 township schools of the model county (利川市), one classroom each.
TOWNSHIPS = (
    "都亭街道",
    "东城街道",
    "凉雾乡",
    "南坪乡",
    "元堡乡",
    "沙溪乡",
    "文斗乡",
    "汪营镇",
    "团堡镇",
    "柏杨坝镇",
    "谋道镇",
    "建南镇",
    "忠路镇",
    "毛坝镇",
    "经济开发区",
)


def school_id(township: str) -> str:
    """The directory id of a township's school (the programme's school ids: t01-t15)."""
    return f"t{TOWNSHIPS.index(township) + 1:02d}"


# what a classroom is: a township's party school, a party-education base, a village teaching
# point (教学点)
KINDS = {"school": "乡镇党校", "base": "教育基地", "point": "教学点"}


@dataclass(frozen=True)
class Classroom:
    """A place members watch together, in the county's directory."""

    id: str
    name: str
    kind: str
    township: str
    capacity: int = 0


@dataclass(frozen=True)
class Room:
    """A classroom's place in one lecture: its own secret code (教室码)."""

    code: str
    name: str
    township: str = ""
    classroom: str = ""  # its directory id ('' for a lecture made before the directory)
    kind: str = "school"


@dataclass(frozen=True)
class Member:
    member_id: str
    name: str
    township: str
    phone: str = ""
    category: str = "other"


@dataclass(frozen=True)
class Session:
    id: str
    title: str
    status: str
    video_codec: str
    created_at: float
    rooms: tuple[Room, ...] = ()

    @property
    def room_names(self) -> dict[str, str]:
        """Each room's code to its name (a report names rooms by them)."""
        return {r.code: r.name for r in self.rooms}

    @property
    def room_townships(self) -> dict[str, str]:
        """Each room's code to its township, whose members it checks in."""
        return {r.code: r.township for r in self.rooms}


# What create_session makes (8 hex digits). A path or URL segment that claims to be a session
# is checked against it before it names anything on disk.
SESSION_ID = re.compile(r"[0-9a-f]{8}")


def is_session_id(text: str) -> bool:
    return SESSION_ID.fullmatch(text) is not None


SELECT_MEMBERS = "SELECT member_id, name, township, phone, category FROM members"
SELECT_CLASSROOMS = "SELECT id, name, kind, township, capacity FROM classrooms"
SELECT_ROOMS = "SELECT code, name, township, classroom, kind FROM rooms"


class Store:
    def __init__(self, path: Path) -> None:
        self.path = private_file(path)  # names and phone numbers
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        upgrade(self._db, "relay.sqlite3")

    def close(self) -> None:
        self._db.close()

    def create_session(
        self,
        title: str,
        rooms: Sequence[Classroom] | None = None,
        video_codec: str = "H264",
    ) -> Session:
        """A session with a room, and its code, for each of ``rooms`` (the directory's
        township schools when None)."""
        if rooms is None:
            rooms = self.classrooms(kind="school")
        sid = secrets.token_hex(4)
        now = time.time()
        made = [Room(self._new_code(), c.name, c.township, c.id, c.kind) for c in rooms]
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO sessions (id, title, video_codec, created_at) VALUES (?, ?, ?, ?)",
                (sid, title, video_codec, now),
            )
            self._db.executemany(
                "INSERT INTO rooms (session_id, code, name, township, classroom, kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(sid, r.code, r.name, r.township, r.classroom, r.kind) for r in made],
            )
        return Session(sid, title, "scheduled", video_codec, now, tuple(made))

    def _new_code(self) -> str:
        """An 8-digit room code that no room has (a code names one room of one lecture)."""
        while True:
            code = f"{secrets.randbelow(10**8):08d}"
            if self._db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is None:
                return code

    def get_session(self, sid: str) -> Session | None:
        row = self._db.execute(
            "SELECT id, title, status, video_codec, created_at FROM sessions WHERE id = ?", (sid,)
        ).fetchone()
        if row is None:
            return None
        rows = self._db.execute(SELECT_ROOMS + " WHERE session_id = ? ORDER BY rowid", (sid,))
        return Session(*row, rooms=tuple(Room(*r) for r in rows))

    def list_sessions(self) -> list[Session]:
        ids = [r[0] for r in self._db.execute("SELECT id FROM sessions ORDER BY created_at DESC")]
        return [s for s in map(self.get_session, ids) if s is not None]

    def room_by_code(self, code: str) -> tuple[str, Room] | None:
        row = self._db.execute(
            "SELECT session_id, code, name, township, classroom, kind FROM rooms WHERE code = ?",
            (code,),
        )
        found = row.fetchone()
        return None if found is None else (found[0], Room(*found[1:]))

    def set_status(self, sid: str, status: str) -> None:
        column = {"live": "started_at", "ended": "ended_at"}.get(status)
        with self._db:
            self._db.execute("UPDATE sessions SET status = ? WHERE id = ?", (status, sid))
            if column:
                self._db.execute(
                    f"UPDATE sessions SET {column} = COALESCE({column}, ?) WHERE id = ?",
                    (time.time(), sid),
                )

    def set_video_codec(self, sid: str, codec: str) -> None:
        with self._db:
            self._db.execute("UPDATE sessions SET video_codec = ? WHERE id = ?", (codec, sid))

    # -- classroom directory ---------------------------------------------------------------
    def upsert_classrooms(self, classrooms: Sequence[Classroom]) -> int:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO classrooms (id, name, kind, township, capacity)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET name=excluded.name,"
                " kind=excluded.kind, township=excluded.township, capacity=excluded.capacity",
                [(c.id, c.name, c.kind, c.township, c.capacity) for c in classrooms],
            )
        return len(classrooms)

    def classrooms(self, township: str | None = None, kind: str | None = None) -> list[Classroom]:
        """The directory (or a township's part, or one kind), in the county's township order
        and, within a township, schools first, then by id."""
        wheres, args = [], []
        if township is not None:
            wheres.append("township = ?")
            args.append(township)
        if kind is not None:
            wheres.append("kind = ?")
            args.append(kind)
        where = (" WHERE " + " AND ".join(wheres)) if wheres else ""
        found = [Classroom(*r) for r in self._db.execute(SELECT_CLASSROOMS + where, args)]
        order = {t: i for i, t in enumerate(TOWNSHIPS)}
        kinds = {k: i for i, k in enumerate(KINDS)}
        found.sort(key=lambda c: (order.get(c.township, 99), kinds.get(c.kind, 9), c.id))
        return found

    # -- roster --------------------------------------------------------------------------
    def upsert_members(self, members: list[Member]) -> int:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO members (member_id, name, township, phone, category)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(member_id) DO UPDATE SET"
                " name=excluded.name, township=excluded.township, phone=excluded.phone,"
                " category=excluded.category",
                [(m.member_id, m.name, m.township, m.phone, m.category) for m in members],
            )
        return len(members)

    def member(self, member_id: str) -> Member | None:
        row = self._db.execute(
            SELECT_MEMBERS + " WHERE member_id = ?",
            (member_id,),
        ).fetchone()
        return None if row is None else Member(*row)

    def members(self, township: str | None = None) -> list[Member]:
        query = SELECT_MEMBERS
        args: tuple = ()
        if township is not None:
            query += " WHERE township = ?"
            args = (township,)
        return [Member(*r) for r in self._db.execute(query + " ORDER BY member_id", args)]

    def member_names(self, member_ids: list[str]) -> dict[str, str]:
        """Member id -> name, for the ids that are in the roster."""
        if not member_ids:
            return {}
        marks = ",".join("?" * len(member_ids))
        rows = self._db.execute(
            f"SELECT member_id, name FROM members WHERE member_id IN ({marks})", member_ids
        )
        return dict(rows.fetchall())

    def search_members(self, township: str, text: str, limit: int) -> list[Member]:
        """Members of ``township`` whose member id starts with ``text`` or whose name contains
        it (``%`` and ``_`` taken literally), by member id, at most ``limit``."""
        literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db.execute(
            SELECT_MEMBERS + " WHERE township = ? AND (member_id LIKE ? ESCAPE '\\'"
            " OR name LIKE ? ESCAPE '\\') ORDER BY member_id LIMIT ?",
            (township, literal + "%", "%" + literal + "%", limit),
        )
        return [Member(*r) for r in rows]

    def roster_apart(self) -> list[Member]:
        """Every member, read on a connection of its own: for a worker thread. The whole
        roster (30,000 rows) takes ~130 ms, which the event loop should not wait through."""
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute(SELECT_MEMBERS + " ORDER BY member_id")
            return [Member(*r) for r in rows]
        finally:
            db.close()

    def records(self, sid: str) -> bool:
        row = self._db.execute("SELECT record FROM sessions WHERE id = ?", (sid,)).fetchone()
        return bool(row and row[0])

    def set_record(self, sid: str, record: bool) -> None:
        with self._db:
            self._db.execute("UPDATE sessions SET record = ? WHERE id = ?", (int(record), sid))

    def replay_credit(self, sid: str) -> bool:
        row = self._db.execute("SELECT replay_credit FROM sessions WHERE id = ?", (sid,))
        found = row.fetchone()
        return bool(found and found[0])

    def set_replay_credit(self, sid: str, credit: bool) -> None:
        with self._db:
            self._db.execute(
                "UPDATE sessions SET replay_credit = ? WHERE id = ?", (int(credit), sid)
            )

    def set_credit_threshold(self, sid: str, threshold: float) -> None:
        with self._db:
            self._db.execute(
                "UPDATE sessions SET credit_threshold = ? WHERE id = ?", (threshold, sid)
            )

    def credit_threshold(self, sid: str) -> float:
        row = self._db.execute("SELECT credit_threshold FROM sessions WHERE id = ?", (sid,))
        found = row.fetchone()
        return DEFAULT_THRESHOLD if found is None else float(found[0])

    def rollcall_rule(self, sid: str) -> tuple[int, bool]:
        """(roll calls required, replay earns without them): the cache of the policy event."""
        row = self._db.execute(
            "SELECT rollcalls_required, replay_without_rollcalls FROM sessions WHERE id = ?",
            (sid,),
        ).fetchone()
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def set_rollcall_rule(self, sid: str, required: int, replay_without: bool) -> None:
        with self._db:
            self._db.execute(
                "UPDATE sessions SET rollcalls_required = ?, replay_without_rollcalls = ?"
                " WHERE id = ?",
                (required, int(replay_without), sid),
            )

    # -- planned roll calls (点名): seconds after the lecture went live ----------------------
    def set_rollcall_plan(self, sid: str, at_s: Sequence[int]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM rollcall_plans WHERE session_id = ?", (sid,))
            self._db.executemany(
                "INSERT OR IGNORE INTO rollcall_plans (session_id, at_s) VALUES (?, ?)",
                [(sid, t) for t in at_s],
            )

    def rollcall_plan(self, sid: str) -> list[tuple[int, bool]]:
        rows = self._db.execute(
            "SELECT at_s, done FROM rollcall_plans WHERE session_id = ? ORDER BY at_s", (sid,)
        )
        return [(at, bool(done)) for at, done in rows]

    def planned_rollcalls(self) -> dict[str, list[int]]:
        """Every live session's roll calls still to come: session -> seconds after its start."""
        rows = self._db.execute(
            "SELECT p.session_id, p.at_s FROM rollcall_plans p JOIN sessions s"
            " ON s.id = p.session_id WHERE p.done = 0 AND s.status = 'live' ORDER BY p.at_s"
        )
        out: dict[str, list[int]] = {}
        for sid, at in rows:
            out.setdefault(sid, []).append(at)
        return out

    def rollcall_done(self, sid: str, at_s: int) -> None:
        with self._db:
            self._db.execute(
                "UPDATE rollcall_plans SET done = 1 WHERE session_id = ? AND at_s = ?", (sid, at_s)
            )

    def started_at(self, sid: str) -> float | None:
        row = self._db.execute("SELECT started_at FROM sessions WHERE id = ?", (sid,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def record_headcount(self, sid: str, room_code: str, count: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO headcounts (session_id, room_code, count, at) VALUES (?, ?, ?, ?)",
                (sid, room_code, count, time.time()),
            )

    def latest_headcounts(self, sid: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT room_code, count FROM headcounts WHERE session_id = ? ORDER BY at", (sid,)
        )
        return {code: count for code, count in rows}
