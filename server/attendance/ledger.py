"""The attendance ledger: append-only SQLite table, one hash chain per session.

Durable before acknowledged: appends are group-committed by one writer (every append that
arrives while a commit is in flight, or within ``commit_interval_s`` of the last one's start,
joins the next one; under the server the writer is a child process, see writer.py), with
``synchronous=FULL`` in WAL mode, so an acknowledged event survives a crash of the process
*and* of the machine. See docs/DECISIONS.md for why FULL rather than NORMAL, and for the
interval.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from server.attendance.events import GENESIS, Event, canonical, chain_hash, data_from_json
from server.attendance.group_commit import GroupCommit
from server.attendance.signing import Checkpoint
from server.attendance.writer import (
    Appended,
    Entry,
    EventRefused,
    WriterProcess,
    WriterThread,
    connect,
)
from server.histogram import Histogram, p99_ms

log = logging.getLogger(__name__)


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
NEXT_SESSION = """
WITH RECURSIVE s(session) AS (
    SELECT MIN(session) FROM events
    UNION ALL
    SELECT (SELECT MIN(session) FROM events WHERE session > s.session) FROM s
    WHERE s.session IS NOT NULL
) SELECT session FROM s
"""
ENDED_SESSIONS = "SELECT DISTINCT session FROM checkpoints WHERE final = 1"


class Ledger:
    def __init__(self, path: Path, commit_interval_s: float = 0.0, process: bool = False) -> None:
        """``process``: write in a child process (the server) rather than a thread of this
        one (the CLI, tests)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = WriterProcess(path) if process else WriterThread(path)
        self._read = connect(path)
        self._read_lock = threading.Lock()
        self.appended = 0
        self.batches = 0
        # How long the event loop's appends waited to be durable: queued behind the commit
        # in flight, then their own (``write_seconds``: its time in the writer).
        self.durable_seconds = Histogram()
        # A commit's fixed cost (its fsync, the hand-over to the writer and back) is
        # several appends' worth: under a steady trickle, appends wait up to
        # ``commit_interval_s`` to share.
        self._group: GroupCommit[tuple[str, Event, int], Appended] = GroupCommit(
            self._commit_async, commit_interval_s, self.durable_seconds
        )

    @property
    def write_seconds(self) -> Histogram:
        """Each batch's time in the writer: hashing, inserting and its commit's fsync."""
        return self._writer.write_seconds

    @property
    def pending(self) -> int:
        """Appends waiting for the next commit."""
        return self._group.pending

    @property
    def on_durable(self) -> Callable[[list[tuple], list[Appended]], None] | None:
        """Told of each batch the event loop's appends made durable, on the loop, in order:
        ``(session, event, at_ms)`` each, and what each became. Reports keep live folds up
        to date with it."""
        return self._group.on_committed

    @on_durable.setter
    def on_durable(self, follow: Callable[[list[tuple], list[Appended]], None] | None) -> None:
        self._group.on_committed = follow

    @property
    def writer_pid(self) -> int | None:
        """The writer child process, when there is one."""
        proc = self._writer.process
        return proc.pid if proc is not None else None

    # -- writing -------------------------------------------------------------------------
    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        """Append and return once the event is on disk."""
        return await self.submit(session, event, at_ms)

    def submit(self, session: str, event: Event, at_ms: int | None = None) -> asyncio.Future:
        """Queue an append now (order is the order of calls); the future resolves once it is
        on disk."""
        return self._group.submit((session, event, at_ms or now_ms()))

    def append_now(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        """Synchronous append, for the CLI and start-up recovery (no event loop needed).
        EventRefused when the event cannot be written."""
        done = self._commit([(session, event, at_ms or now_ms(), None)])[0]
        if isinstance(done, EventRefused):
            raise done
        return done

    async def _commit_async(self, batch: list[tuple[str, Event, int]]) -> list[Appended]:
        entries = [(s, e, t, None) for s, e, t in batch]
        return self._counted(await self._writer.append_async(entries))

    def apply_stream(self, entries: list[Entry]) -> int:
        """Append entries read from the Redis stream, each once (by stream id, or by an edge
        outbox's row number and mark), in one durable commit; returns how many were new.
        Blocks (the stream writer calls it from a worker thread). An entry that cannot be
        written is refused alone (and logged); the others are committed."""
        results = self._commit(entries)
        return sum(type(r) is Appended for r in results)

    def _commit(self, batch: list[Entry]) -> list:
        return self._counted(self._writer.append(batch))

    def _counted(self, out: list) -> list:
        self.appended += sum(type(r) is Appended for r in out)
        self.batches += 1
        return out

    def save_checkpoint(self, cp: Checkpoint) -> None:
        """Store a signed checkpoint (blocking: the CLI, tests)."""
        self._writer.save_checkpoint(_checkpoint_fields(cp))

    async def store_checkpoint(self, cp: Checkpoint) -> None:
        """Store a signed checkpoint, from the event loop."""
        await self._writer.save_checkpoint_async(_checkpoint_fields(cp))

    # -- reading -------------------------------------------------------------------------
    def rows(self, session: str) -> Iterator[Row]:
        """The session's events as stored, in order (read in chunks, see ``_stream``)."""
        for s, seq, at_ms, kind, data, prev, digest in self._stream(
            "SELECT session, seq, at_ms, kind, data, prev, hash FROM events"
            " WHERE session = ? ORDER BY seq",
            (session,),
        ):
            yield Row(s, seq, at_ms, kind, data_from_json(data), prev, digest)

    def scan(self, session: str, after: int = 0) -> Iterator[tuple[int, int, str, str]]:
        """``(seq, at_ms, kind, data JSON)`` of the session's events after ``after``, in order:
        what a report reads."""
        return self._stream(
            "SELECT seq, at_ms, kind, data FROM events WHERE session = ? AND seq > ? ORDER BY seq",
            (session, after),
        )

    def _stream(self, sql: str, args: tuple) -> Iterator[tuple]:
        """Rows of a query on a connection of its own, in chunks: a long session is read as
        one snapshot without holding all of it, or the read lock, meanwhile. The caller may
        go on from another thread (an export streamed from worker threads), one at a time."""
        db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            db.execute("PRAGMA query_only=1")
            cursor = db.execute(sql, args)
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

    def outbox_marks(self, boxes: list[str]) -> dict[str, int]:
        """How far each cluster edge's outbox is in the ledger (every row up to the mark)."""
        if not boxes:
            return {}
        places = ", ".join("?" * len(boxes))
        with self._read_lock:
            found = dict(
                self._read.execute(
                    f"SELECT box, mark FROM outbox_marks WHERE box IN ({places})", boxes
                )
            )
        return {box: found.get(box, 0) for box in boxes}

    def checkpoints(self, session: str) -> list[Checkpoint]:
        with self._read_lock:
            rows = self._read.execute(
                "SELECT session, seq, head, at_ms, final, key_fp, signature FROM checkpoints"
                " WHERE session = ? ORDER BY seq, final",
                (session,),
            ).fetchall()
        return [Checkpoint(s, seq, h, at, bool(f), fp, sig) for s, seq, h, at, f, fp, sig in rows]

    def sessions(self) -> list[str]:
        """Every session with events, found by seeking from one to the next in the key (a
        DISTINCT visits every event: a year of lectures is hundreds of millions)."""
        with self._read_lock:
            return [r[0] for r in self._read.execute(NEXT_SESSION) if r[0] is not None]

    def open_sessions(self) -> list[str]:
        """The sessions without a final checkpoint: not ended (or ended by a server that died
        before signing the end)."""
        with self._read_lock:
            ended = {r[0] for r in self._read.execute(ENDED_SESSIONS)}
        return [s for s in self.sessions() if s not in ended]

    def unsigned_sessions(self) -> list[str]:
        """The sessions whose newest event no checkpoint covers (appended after the last
        tick before a stop or a crash): a lookup per session, the checkpoints read once."""
        with self._read_lock:
            signed = dict(
                self._read.execute("SELECT session, MAX(seq) FROM checkpoints GROUP BY session")
            )
        return [s for s in self.sessions() if self.head(s)[0] > signed.get(s, 0)]

    def close(self) -> None:
        self._writer.close()
        self._read.close()

    # -- the AttendanceSink surface beside the appends (server/attendance/sink.py) -------------
    holds_record = True  # this node's own ledger

    def start(self) -> None:
        """Nothing runs beside the appends: the writer started with the ledger."""

    async def aclose(self) -> None:
        self.close()

    def follow(self, callback: Callable[[list[tuple], list[Appended]], None]) -> None:
        self.on_durable = callback

    def status(self) -> dict:
        """Since start: how many events, how many wait, how long they waited to be on disk."""
        return {
            "events": self.appended,
            "pending": self.pending,
            "durable_p99_ms": p99_ms(self.durable_seconds),
            "write_p99_ms": p99_ms(self.write_seconds),
        }

    def measures(self) -> list[tuple[str, str, str, float]]:
        return [
            ("lr_ledger_events_total", "counter", "Events appended to the attendance ledger.",
             self.appended),
            ("lr_ledger_commits_total", "counter", "Ledger commits (batches).", self.batches),
            ("lr_ledger_pending", "gauge", "Appends waiting to be committed.", self.pending),
        ]  # fmt: skip

    def histograms(self) -> list[tuple[str, str, Histogram]]:
        return [
            (
                "lr_ledger_durable_seconds",
                "From an append (a heartbeat, a join, ...) to its being on disk, when it is"
                " answered.",
                self.durable_seconds,
            ),
            (
                "lr_ledger_write_seconds",
                "One batch in the ledger writer: hashing, inserting, and its commit's fsync.",
                self.write_seconds,
            ),
        ]


def _checkpoint_fields(cp: Checkpoint) -> tuple:
    return (cp.session, cp.seq, cp.head, cp.at_ms, int(cp.final), cp.key_fp, cp.signature)


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
