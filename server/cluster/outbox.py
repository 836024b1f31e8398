"""An edge node's attendance on its own disk until the home node's ledger has it.

An edge acknowledges a heartbeat (or answers a leaving member's DELETE) once the event is in
this file (SQLite, WAL, ``synchronous=FULL``, group-committed like the ledger), so an
acknowledgement means durable on an edge too: a Redis outage, a Redis restart that lost the
stream, and a crash of the edge itself lose nothing. The sender (``StreamLedger`` in
stream.py) forgets a row only once the ledger writer has confirmed it.

Rows are numbered by ``AUTOINCREMENT`` (never reused, even after every row is forgotten), and
the file has an id of its own (``box``), made when it is created: ``box:seq`` names an event
for ever, so a row sent twice is appended once, and a fresh data directory never collides
with an old one's numbers.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from server.attendance.writer import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    node TEXT NOT NULL
);
"""

# session, kind, data (JSON), at_ms, node instance
Row = tuple[str, str, str, int, str]


class Outbox:
    """The file. Blocking; one thread at a time (the sender keeps it on a thread of its own)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        found = self._db.execute("SELECT value FROM meta WHERE key = 'box'").fetchone()
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('box', ?)", (secrets.token_hex(8),))
            found = self._db.execute("SELECT value FROM meta WHERE key = 'box'").fetchone()
        self.box: str = found[0]

    def add(self, rows: list[Row]) -> int:
        """Append in one durable commit; the last row's number."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (session, kind, data, at_ms, node) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return last[0]

    def after(self, seq: int, limit: int) -> list[tuple[int, str, str, str, int, str]]:
        """Up to ``limit`` rows numbered above ``seq``, in order."""
        return self._db.execute(
            "SELECT seq, session, kind, data, at_ms, node FROM outbox WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()

    def forget(self, upto: int) -> None:
        """Drop the rows the ledger has confirmed."""
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))

    def bounds(self) -> tuple[int, int]:
        """(the number below which every row was confirmed, the last number given)."""
        last = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        first = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
        last_seq = last[0] if last else 0
        return (first - 1 if first is not None else last_seq), last_seq

    def close(self) -> None:
        self._db.close()
