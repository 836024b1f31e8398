"""The attendance ledger: append-only SQLite table, one hash chain per session.

Durable before acknowledged: appends are group-committed by one writer thread (every append
that arrives while a commit is in flight, or within ``commit_interval_s`` of the last one's
start, joins the next one), with ``synchronous=FULL`` in WAL mode, so an acknowledged event
survives a crash of the process *and* of the machine. See docs/DECISIONS.md for why FULL
rather than NORMAL, and for the interval.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from server.attendance.events import (
    GENESIS,
    Event,
    canonical,
    chain_hash,
    data_from_json,
    data_json,
)
from server.attendance.signing import Checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    final INTEGER NOT NULL,
    key_fp TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (session, seq, final)
);
-- Stream entries (cluster mode) already written: a writer restarted between its commit and
-- its XACK reads them again and must not append them twice.
CREATE TABLE IF NOT EXISTS stream_applied (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


class Row(NamedTuple):
    """One ledger event as stored. (A named tuple: a long session has millions, and a frozen
    dataclass took three times as long to make.)"""

    session: str
    seq: int
    at_ms: int
    kind: str
    data: dict
    prev: str
    hash: str


SCAN_CHUNK = 10_000


@dataclass(frozen=True)
class Appended:
    seq: int
    hash: str
    at_ms: int


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Ledger:
    def __init__(self, path: Path, commit_interval_s: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = _connect(path)
        self._db.executescript(SCHEMA)
        self._read = _connect(path)
        self._read_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._pending: list[tuple[str, Event, int, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        # A commit's fixed cost (its fsync, the hand-over to the writer thread and back) is
        # several appends' worth: under a steady trickle, appends wait up to this long to share.
        self.commit_interval_s = commit_interval_s
        self._last_commit = -1e9
        self.appended = 0
        self.batches = 0

    # -- writing -------------------------------------------------------------------------
    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        """Append and return once the event is on disk."""
        return await self.submit(session, event, at_ms)

    def submit(self, session: str, event: Event, at_ms: int | None = None) -> asyncio.Future:
        """Queue an append now (order is the order of calls); the future resolves once it is
        on disk."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((session, event, at_ms or now_ms(), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return future

    def append_now(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        """Synchronous append, for the CLI and start-up recovery (no event loop needed)."""
        return self._executor.submit(self._write, [(session, event, at_ms or now_ms())]).result()[0]

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_commit + self.commit_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_commit = loop.time()
            batch, self._pending = self._pending, []
            try:
                results = await loop.run_in_executor(
                    self._executor, self._write, [(s, e, t) for s, e, t, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiter hears of the failure
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _write(self, batch: list[tuple[str, Event, int]]) -> list[Appended]:
        return self._transaction([(s, e, t, None) for s, e, t in batch])

    def apply_stream(self, entries: list[tuple[str, Event, int, str]]) -> int:
        """Append entries read from the Redis stream, each once (by stream id), in one
        durable commit; returns how many were new. Runs on the writer thread."""
        results = self._executor.submit(self._transaction, entries).result()
        return sum(r is not None for r in results)

    def _transaction(self, batch: list[tuple[str, Event, int, str | None]]) -> list:
        db = self._db
        out: list[Appended | None] = []
        touched: dict[str, tuple[int, str]] = {}
        rows: list[tuple] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for session, event, at_ms, stream_id in batch:
                if stream_id is not None:
                    seen = db.execute(
                        "SELECT 1 FROM stream_applied WHERE id = ?", (stream_id,)
                    ).fetchone()
                    if seen:
                        out.append(None)
                        continue
                    db.execute("INSERT INTO stream_applied (id) VALUES (?)", (stream_id,))
                seq, prev = touched.get(session) or self._head(session)
                seq += 1
                encoded = data_json(event.data())
                digest = chain_hash(prev, canonical(session, seq, at_ms, event.kind, {}, encoded))
                rows.append((session, seq, at_ms, event.kind, encoded, prev, digest))
                touched[session] = (seq, digest)
                out.append(Appended(seq, digest, at_ms))
            _insert(db, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.appended += sum(r is not None for r in out)
        self.batches += 1
        return out

    def _head(self, session: str) -> tuple[int, str]:
        # Read inside the write transaction, not from a cache: another process (the CLI
        # recording an export) may have appended since.
        row = self._db.execute(
            "SELECT seq, hash FROM events WHERE session = ? ORDER BY seq DESC LIMIT 1",
            (session,),
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def save_checkpoint(self, cp: Checkpoint) -> None:
        self._executor.submit(self._save_checkpoint, cp).result()

    def _save_checkpoint(self, cp: Checkpoint) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO checkpoints"
            " (session, seq, head, at_ms, final, key_fp, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cp.session, cp.seq, cp.head, cp.at_ms, int(cp.final), cp.key_fp, cp.signature),
        )

    # -- reading -------------------------------------------------------------------------
    def rows(self, session: str) -> Iterator[Row]:
        with self._read_lock:
            cursor = self._read.execute(
                "SELECT session, seq, at_ms, kind, data, prev, hash FROM events"
                " WHERE session = ? ORDER BY seq",
                (session,),
            )
            rows = cursor.fetchall()
        for s, seq, at_ms, kind, data, prev, digest in rows:
            yield Row(s, seq, at_ms, kind, data_from_json(data), prev, digest)

    def scan(self, session: str, after: int = 0) -> Iterator[tuple[int, int, str, str]]:
        """``(seq, at_ms, kind, data JSON)`` of the session's events after ``after``, in order:
        what a report reads. On a connection of its own, in chunks, so that a long session is
        read as one snapshot without holding all of it, or the read lock, meanwhile."""
        db = sqlite3.connect(self.path)
        try:
            db.execute("PRAGMA query_only=1")
            cursor = db.execute(
                "SELECT seq, at_ms, kind, data FROM events"
                " WHERE session = ? AND seq > ? ORDER BY seq",
                (session, after),
            )
            while chunk := cursor.fetchmany(SCAN_CHUNK):
                yield from chunk
        finally:
            db.close()

    def head(self, session: str) -> tuple[int, str]:
        with self._read_lock:
            row = self._read.execute(
                "SELECT seq, hash FROM events WHERE session = ? ORDER BY seq DESC LIMIT 1",
                (session,),
            ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def checkpoints(self, session: str) -> list[Checkpoint]:
        with self._read_lock:
            rows = self._read.execute(
                "SELECT session, seq, head, at_ms, final, key_fp, signature FROM checkpoints"
                " WHERE session = ? ORDER BY seq, final",
                (session,),
            ).fetchall()
        return [Checkpoint(s, seq, h, at, bool(f), fp, sig) for s, seq, h, at, f, fp, sig in rows]

    def sessions(self) -> list[str]:
        with self._read_lock:
            return [r[0] for r in self._read.execute("SELECT DISTINCT session FROM events")]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._db.close()
        self._read.close()


@lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
    return f"INSERT INTO events (session, seq, at_ms, kind, data, prev, hash) VALUES {values}"


def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert a batch's rows with a few statements of many rows each, not one per row.

    sqlite3 lets go of the interpreter lock around every step of a statement, and the writer
    thread must then win it back from the event loop: with ``executemany`` that was once per
    row, dozens of hand-overs per commit (docs/DECISIONS.md). The batch is split into powers
    of two up to 256 rows (7 values each; SQLite allows 32,766), so that a handful of
    statements, each prepared once and cached, serve every batch size."""
    i = 0
    while i < len(rows):
        n = min(256, 1 << ((len(rows) - i).bit_length() - 1))
        db.execute(_insert_sql(n), [v for row in rows[i : i + n] for v in row])
        i += n


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    first_bad_seq: int | None = None
    reason: str = ""


def check_chain(rows: list[Row] | Iterator[Row], session: str) -> ChainCheck:
    """Recompute the chain; name the first sequence number where it breaks."""
    prev = GENESIS
    expected = 1
    count = 0
    for row in rows:
        if row.seq != expected:
            if row.seq > expected:
                return ChainCheck(False, count, prev, expected, f"event {expected} is missing")
            return ChainCheck(False, count, prev, row.seq, f"event {row.seq} appears twice")
        if row.prev != prev:
            bad = row.seq - 1 if row.seq > 1 else row.seq
            return ChainCheck(
                False, count, prev, bad, f"event {bad} was altered (the chain breaks after it)"
            )
        digest = chain_hash(prev, canonical(session, row.seq, row.at_ms, row.kind, row.data))
        if digest != row.hash:
            return ChainCheck(False, count, prev, row.seq, f"event {row.seq} was altered")
        prev = digest
        expected += 1
        count += 1
    return ChainCheck(True, count, prev)
