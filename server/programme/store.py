"""SQLite tables of the programme, beside the relay's own (same file, its own connection).

Over 500 lines on purpose: one schema (teachers, courses, tasks, trainings, feedback,
credits) and the queries on it, which join across those tables; each part alone is small,
and the schema is read in one place."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.files import private_file
from server.schema import upgrade
from server.store import TOWNSHIPS

SCHEMA = """
CREATE TABLE IF NOT EXISTS schools (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS teachers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, organisation TEXT NOT NULL, tier TEXT NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools(id), tags TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS courses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL, topic TEXT NOT NULL, class_hours REAL NOT NULL,
    materials TEXT NOT NULL DEFAULT '', quiz TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS course_teachers (
    course_id INTEGER NOT NULL, teacher_id INTEGER NOT NULL,
    PRIMARY KEY (course_id, teacher_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    theme TEXT NOT NULL, class_hours REAL NOT NULL, method TEXT NOT NULL,
    townships TEXT NOT NULL, categories TEXT NOT NULL,
    period_from TEXT NOT NULL, period_to TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trainings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, task_id INTEGER, school_id TEXT NOT NULL,
    teacher_id INTEGER NOT NULL, course_id INTEGER NOT NULL,
    starts_at REAL NOT NULL, ends_at REAL NOT NULL, audience TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', session_id TEXT,
    created_at REAL NOT NULL, decided_at REAL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL, participant TEXT NOT NULL, rating INTEGER NOT NULL,
    comment TEXT NOT NULL, score REAL, at REAL NOT NULL,
    UNIQUE (session_id, participant)
);
CREATE TABLE IF NOT EXISTS credits (
    member_id TEXT NOT NULL, session_id TEXT NOT NULL, hours REAL NOT NULL,
    year INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (member_id, session_id)
);
"""


def school_id(index: int) -> str:
    return f"t{index + 1:02d}"


@dataclass(frozen=True)
class Teacher:
    id: int
    name: str
    organisation: str
    tier: str
    school_id: str
    tags: tuple[str, ...]
    contact: str = ""

    def as_json(self, with_contact: bool) -> dict:
        out = {
            "id": self.id,
            "name": self.name,
            "organisation": self.organisation,
            "tier": self.tier,
            "school_id": self.school_id,
            "tags": list(self.tags),
        }
        if with_contact:
            out["contact"] = self.contact
        return out


@dataclass(frozen=True)
class Course:
    id: int
    title: str
    topic: str
    class_hours: float
    materials: str
    teacher_ids: tuple[int, ...]
    quiz: list = field(default_factory=list)

    def as_json(self, with_answers: bool = True) -> dict:
        quiz = (
            self.quiz
            if with_answers
            else [{k: v for k, v in q.items() if k != "answer"} for q in self.quiz]
        )
        return {
            "id": self.id,
            "title": self.title,
            "topic": self.topic,
            "class_hours": self.class_hours,
            "materials": self.materials,
            "teacher_ids": list(self.teacher_ids),
            "quiz": quiz,
        }


@dataclass(frozen=True)
class Training:
    id: int
    kind: str  # assigned (下单式) or ordered (点单式)
    task_id: int | None
    school_id: str
    teacher_id: int
    course_id: int
    starts_at: float
    ends_at: float
    audience: dict
    state: str  # filed, approved, rejected
    reason: str
    session_id: str | None

    def as_json(self) -> dict:
        return self.__dict__.copy()


class ProgrammeStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(
            private_file(path), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        upgrade(self._db, "relay.sqlite3")
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO schools VALUES ('city', '利川市委党校', 'city')"
            )
            for i, name in enumerate(TOWNSHIPS):
                self._db.execute(
                    "INSERT OR IGNORE INTO schools VALUES (?, ?, 'township')",
                    (school_id(i), f"{name}党校"),
                )

    def close(self) -> None:
        self._db.close()

    # -- schools ---------------------------------------------------------------------------
    def schools(self) -> list[dict]:
        rows = self._db.execute("SELECT id, name, kind FROM schools ORDER BY id")
        return [{"id": i, "name": n, "kind": k} for i, n, k in rows]

    def school(self, sid: str) -> dict | None:
        return next((s for s in self.schools() if s["id"] == sid), None)

    def school_of_township(self, township: str) -> str | None:
        return school_id(TOWNSHIPS.index(township)) if township in TOWNSHIPS else None

    # -- teacher pool ----------------------------------------------------------------------
    def add_teachers(self, teachers: list[tuple]) -> list[int]:
        """(name, organisation, tier, school_id, tags tuple, contact) each; returns their ids."""
        ids = []
        with self._db:
            self._db.execute("BEGIN")
            for name, org, tier, school, tags, contact in teachers:
                cur = self._db.execute(
                    "INSERT INTO teachers (name, organisation, tier, school_id, tags, contact)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, org, tier, school, ",".join(tags), contact),
                )
                ids.append(cur.lastrowid)
        return ids

    def update_teacher(self, tid: int, **changes) -> None:
        cols = {k: (",".join(v) if k == "tags" else v) for k, v in changes.items()}
        if not cols:  # nothing to change: "SET  WHERE" is no SQL
            return
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self._db:
            self._db.execute(f"UPDATE teachers SET {sets} WHERE id = ?", (*cols.values(), tid))

    def delete_teacher(self, tid: int) -> bool:
        with self._db:
            used = self._db.execute(
                "SELECT 1 FROM trainings WHERE teacher_id = ? AND state != 'rejected'", (tid,)
            ).fetchone()
            if used:
                raise ValueError("this teacher has training booked")
            self._db.execute("DELETE FROM course_teachers WHERE teacher_id = ?", (tid,))
            return self._db.execute("DELETE FROM teachers WHERE id = ?", (tid,)).rowcount > 0

    def teacher(self, tid: int) -> Teacher | None:
        found = self.teachers(ids=[tid])
        return found[0] if found else None

    def teachers(
        self,
        q: str = "",
        tier: str | None = None,
        school: str | None = None,
        tag: str | None = None,
        ids: list[int] | None = None,
    ) -> list[Teacher]:
        sql = "SELECT id, name, organisation, tier, school_id, tags, contact FROM teachers WHERE 1"
        args: list = []
        if q:
            sql += " AND (name LIKE ? OR organisation LIKE ? OR tags LIKE ?)"
            args += [f"%{q}%"] * 3
        if tier:
            sql += " AND tier = ?"
            args.append(tier)
        if school:
            sql += " AND school_id = ?"
            args.append(school)
        if tag:
            sql += " AND (',' || tags || ',') LIKE ?"
            args.append(f"%,{tag},%")
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        rows = self._db.execute(sql + " ORDER BY id", args)
        return [
            Teacher(i, n, o, t, s, tuple(x for x in tags.split(",") if x), c)
            for i, n, o, t, s, tags, c in rows
        ]

    # -- course library --------------------------------------------------------------------
    def add_courses(self, courses: list[tuple]) -> list[int]:
        """(title, topic, class_hours, materials, teacher_ids, quiz) each."""
        ids = []
        with self._db:
            self._db.execute("BEGIN")
            for title, topic, hours, materials, teacher_ids, quiz in courses:
                cur = self._db.execute(
                    "INSERT INTO courses (title, topic, class_hours, materials, quiz)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (title, topic, hours, materials, json.dumps(quiz, ensure_ascii=False)),
                )
                ids.append(cur.lastrowid)
                self._db.executemany(
                    "INSERT OR IGNORE INTO course_teachers VALUES (?, ?)",
                    [(cur.lastrowid, t) for t in teacher_ids],
                )
        return ids

    def update_course(self, cid: int, teacher_ids: list[int] | None = None, **changes) -> None:
        with self._db:
            if changes:
                if "quiz" in changes:
                    changes["quiz"] = json.dumps(changes["quiz"], ensure_ascii=False)
                sets = ", ".join(f"{k} = ?" for k in changes)
                self._db.execute(
                    f"UPDATE courses SET {sets} WHERE id = ?", (*changes.values(), cid)
                )
            if teacher_ids is not None:
                self._db.execute("DELETE FROM course_teachers WHERE course_id = ?", (cid,))
                self._db.executemany(
                    "INSERT INTO course_teachers VALUES (?, ?)", [(cid, t) for t in teacher_ids]
                )

    def delete_course(self, cid: int) -> bool:
        with self._db:
            used = self._db.execute(
                "SELECT 1 FROM trainings WHERE course_id = ? AND state != 'rejected'", (cid,)
            ).fetchone()
            if used:
                raise ValueError("this course has training booked")
            self._db.execute("DELETE FROM course_teachers WHERE course_id = ?", (cid,))
            return self._db.execute("DELETE FROM courses WHERE id = ?", (cid,)).rowcount > 0

    def course(self, cid: int) -> Course | None:
        found = self.courses(ids=[cid])
        return found[0] if found else None

    def courses(
        self,
        q: str = "",
        topic: str | None = None,
        teacher: int | None = None,
        ids: list[int] | None = None,
    ) -> list[Course]:
        sql = "SELECT id, title, topic, class_hours, materials, quiz FROM courses WHERE 1"
        args: list = []
        if q:
            sql += " AND (title LIKE ? OR topic LIKE ?)"
            args += [f"%{q}%"] * 2
        if topic:
            sql += " AND topic = ?"
            args.append(topic)
        if teacher is not None:
            sql += " AND id IN (SELECT course_id FROM course_teachers WHERE teacher_id = ?)"
            args.append(teacher)
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        out = []
        for cid, title, topic_, hours, materials, quiz in self._db.execute(
            sql + " ORDER BY id", args
        ):
            tids = tuple(
                r[0]
                for r in self._db.execute(
                    "SELECT teacher_id FROM course_teachers WHERE course_id = ?"
                    " ORDER BY teacher_id",
                    (cid,),
                )
            )
            out.append(Course(cid, title, topic_, hours, materials, tids, json.loads(quiz)))
        return out

    # -- tasks and trainings ---------------------------------------------------------------
    def add_task(
        self,
        theme: str,
        class_hours: float,
        method: str,
        townships: list[str],
        categories: list[str],
        period_from: str,
        period_to: str,
    ) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO tasks (theme, class_hours, method, townships, categories,"
                " period_from, period_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    theme,
                    class_hours,
                    method,
                    json.dumps(townships, ensure_ascii=False),
                    json.dumps(categories),
                    period_from,
                    period_to,
                    time.time(),
                ),
            )
        return cur.lastrowid

    def task(self, tid: int) -> dict | None:
        found = [t for t in self.tasks() if t["id"] == tid]
        return found[0] if found else None

    def tasks(self, school: str | None = None) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, theme, class_hours, method, townships, categories, period_from,"
            " period_to FROM tasks ORDER BY id"
        )
        out = []
        for tid, theme, hours, method, towns, cats, pfrom, pto in rows:
            townships = json.loads(towns)
            schools = [self.school_of_township(t) for t in townships]
            if school is not None and school not in schools:
                continue
            out.append(
                {
                    "id": tid,
                    "theme": theme,
                    "class_hours": hours,
                    "method": method,
                    "townships": townships,
                    "schools": schools,
                    "categories": json.loads(cats),
                    "period_from": pfrom,
                    "period_to": pto,
                }
            )
        return out

    def add_training(
        self,
        kind: str,
        task_id: int | None,
        school_id: str,
        teacher_id: int,
        course_id: int,
        starts_at: float,
        ends_at: float,
        audience: dict,
    ) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO trainings (kind, task_id, school_id, teacher_id, course_id,"
                " starts_at, ends_at, audience, state, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'filed', ?)",
                (
                    kind,
                    task_id,
                    school_id,
                    teacher_id,
                    course_id,
                    starts_at,
                    ends_at,
                    json.dumps(audience, ensure_ascii=False),
                    time.time(),
                ),
            )
        return cur.lastrowid

    def training(self, tid: int) -> Training | None:
        found = self.trainings(ids=[tid])
        return found[0] if found else None

    def trainings(
        self, school: str | None = None, state: str | None = None, ids: list[int] | None = None
    ) -> list[Training]:
        sql = (
            "SELECT id, kind, task_id, school_id, teacher_id, course_id, starts_at, ends_at,"
            " audience, state, reason, session_id FROM trainings WHERE 1"
        )
        args: list = []
        if school:
            sql += " AND school_id = ?"
            args.append(school)
        if state:
            sql += " AND state = ?"
            args.append(state)
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        return [
            Training(i, k, t, s, te, c, a, b, json.loads(aud), st, r, sess)
            for i, k, t, s, te, c, a, b, aud, st, r, sess in self._db.execute(
                sql + " ORDER BY starts_at", args
            )
        ]

    def conflicts(
        self,
        teacher_id: int,
        school_id: str,
        starts_at: float,
        ends_at: float,
        exclude: int | None = None,
    ) -> list[Training]:
        """Filed or approved trainings overlapping in time with the same teacher or room."""
        rows = self.trainings()
        return [
            t
            for t in rows
            if t.state != "rejected"
            and t.id != exclude
            and t.starts_at < ends_at
            and starts_at < t.ends_at
            and (t.teacher_id == teacher_id or t.school_id == school_id)
        ]

    def decide(self, tid: int, state: str, reason: str, session_id: str | None) -> None:
        with self._db:
            self._db.execute(
                "UPDATE trainings SET state = ?, reason = ?, session_id = ?, decided_at = ?"
                " WHERE id = ?",
                (state, reason, session_id, time.time(), tid),
            )

    def training_of_session(self, session_id: str) -> Training | None:
        row = self._db.execute("SELECT id FROM trainings WHERE session_id = ?", (session_id,))
        found = row.fetchone()
        return self.training(found[0]) if found else None

    # -- feedback and credit ---------------------------------------------------------------
    def add_feedback(
        self, session_id: str, participant: str, rating: int, comment: str, score: float | None
    ) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO feedback (session_id, participant, rating, comment, score, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, participant, rating, comment, score, time.time()),
            )

    def feedback(self, session_ids: list[str]) -> list[dict]:
        if not session_ids:
            return []
        rows = self._db.execute(
            "SELECT session_id, participant, rating, comment, score FROM feedback"
            f" WHERE session_id IN ({','.join('?' * len(session_ids))}) ORDER BY id",
            session_ids,
        )
        return [
            {"session_id": s, "participant": p, "rating": r, "comment": c, "score": sc}
            for s, p, r, c, sc in rows
        ]

    def set_credits(self, session_id: str, hours: float, members: list[str], year: int) -> int:
        """The session's credits are these members' (its earlier ones replaced: a change of
        its credit rule may take some away)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM credits WHERE session_id = ?", (session_id,))
            self._db.executemany(
                "INSERT OR REPLACE INTO credits (member_id, session_id, hours, year, at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(m, session_id, hours, year, time.time()) for m in members],
            )
        return len(members)

    def add_credit(self, session_id: str, hours: float, member: str, year: int) -> bool:
        """One member's credit for the session (made up by replay after it ended); False if
        they had it already."""
        with self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO credits (member_id, session_id, hours, year, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (member, session_id, hours, year, time.time()),
            )
        return cur.rowcount == 1

    def has_credit(self, session_id: str, member: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM credits WHERE session_id = ? AND member_id = ?", (session_id, member)
        )
        return row.fetchone() is not None

    def hours_by_member(self, year: int) -> dict[str, float]:
        rows = self._db.execute(
            "SELECT member_id, SUM(hours) FROM credits WHERE year = ? GROUP BY member_id", (year,)
        )
        return dict(rows.fetchall())

    def credits_of(self, member_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT session_id, hours, year FROM credits WHERE member_id = ? ORDER BY at",
            (member_id,),
        )
        return [{"session_id": s, "hours": h, "year": y} for s, h, y in rows]
