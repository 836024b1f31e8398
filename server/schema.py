"""Schema versions of the relay's SQLite files (``PRAGMA user_version``) and the ordered steps
that bring an older file up to this release's.

Each module still creates its tables with ``CREATE ... IF NOT EXISTS`` (the baseline,
idempotent: a file from before versions existed, at 0, gains what it lacks). Then
:func:`upgrade` runs the steps past the file's version in one write transaction (two
processes opening at once: the second waits and finds nothing to do) and records the new
version. A file newer than this release is refused: an older release would misread it.
A change to a schema from now on is a new step here, never an edit of the baseline."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

Step = Callable[[sqlite3.Connection], None]


def _baseline(db: sqlite3.Connection) -> None:
    """Version 1: the tables as release 0.1.0 made them (created by their modules)."""


def _relay_baseline(db: sqlite3.Connection) -> None:
    """Version 1 of relay.sqlite3, whose tables three modules create: all of them, whichever
    opens the file first, so that the later steps find every table they change."""
    from server.lectures.questions import SCHEMA as QUESTIONS
    from server.programme.store import SCHEMA as PROGRAMME
    from server.store import SCHEMA as STORE

    for script in (STORE, PROGRAMME, QUESTIONS):
        # statement by statement: executescript would commit the upgrade's transaction
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)


def _classrooms(db: sqlite3.Connection) -> None:
    """Version 2 (issue 28): the classroom directory, seeded with the 15 township schools; a
    lecture's room names its classroom, its kind and its township (before, a room was one of
    the 15 schools and named by its township)."""
    from server.store import TOWNSHIPS, school_id

    db.execute(
        "CREATE TABLE classrooms (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
        " kind TEXT NOT NULL, township TEXT NOT NULL, capacity INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX classrooms_by_township ON classrooms (township)")
    db.executemany(
        "INSERT INTO classrooms (id, name, kind, township) VALUES (?, ?, 'school', ?)",
        [(school_id(t), t, t) for t in TOWNSHIPS],
    )
    db.execute(
        "CREATE TABLE rooms_v2 (session_id TEXT NOT NULL, code TEXT PRIMARY KEY,"
        " name TEXT NOT NULL, township TEXT NOT NULL, classroom TEXT NOT NULL DEFAULT '',"
        " kind TEXT NOT NULL DEFAULT 'school')"
    )
    # rowid order kept: a session lists its rooms in the order it was given
    db.execute(
        "INSERT INTO rooms_v2 (session_id, code, name, township, classroom)"
        " SELECT session_id, code, name, name, '' FROM rooms ORDER BY rowid"
    )
    db.execute("DROP TABLE rooms")
    db.execute("ALTER TABLE rooms_v2 RENAME TO rooms")
    db.execute("CREATE INDEX rooms_by_session ON rooms (session_id)")


def _rollcalls(db: sqlite3.Connection) -> None:
    """Version 3 (issue 28): the roll-call part of a session's credit rule (a cache of its
    newest policy event, as the threshold's columns are) and its planned roll calls."""
    db.execute("ALTER TABLE sessions ADD COLUMN rollcalls_required INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "ALTER TABLE sessions ADD COLUMN replay_without_rollcalls INTEGER NOT NULL DEFAULT 0"
    )
    db.execute(
        "CREATE TABLE rollcall_plans (session_id TEXT NOT NULL, at_s INTEGER NOT NULL,"
        " done INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (session_id, at_s))"
    )


# one list a file: relay.sqlite3 is shared by the store, the programme and the Q&A board
STEPS: dict[str, Sequence[Step]] = {
    "relay.sqlite3": (_relay_baseline, _classrooms, _rollcalls),
    "ledger.sqlite3": (_baseline,),
    "outbox.sqlite3": (_baseline,),
}


class SchemaTooNew(RuntimeError):
    """The file was written by a newer release than this one."""


def version_of(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def upgrade(db: sqlite3.Connection, name: str) -> int:
    """Bring ``db`` (the file ``name``, in autocommit mode) to this release's version; the
    version it had."""
    steps = STEPS[name]
    if version_of(db) == len(steps):
        return len(steps)  # the usual case: no write, no lock
    db.execute("BEGIN IMMEDIATE")
    try:
        found = version_of(db)
        if found > len(steps):
            raise SchemaTooNew(
                f"{name} is at schema version {found}, this release knows up to {len(steps)}:"
                " it was written by a newer release; run that one (or restore a backup)"
            )
        for step in steps[found:]:
            step(db)
        db.execute(f"PRAGMA user_version = {len(steps)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found
