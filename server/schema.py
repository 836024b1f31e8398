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


# one list a file: relay.sqlite3 is shared by the store, the programme and the Q&A board
STEPS: dict[str, Sequence[Step]] = {
    "relay.sqlite3": (_baseline,),
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
