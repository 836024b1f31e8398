"""An edge node's attendance on its own disk until the home node's ledger has it, and its
sender to the Redis stream (``StreamLedger``; the writer's side is stream.py).

An edge acknowledges a heartbeat (or answers a leaving member's DELETE) once the event is in
this file (SQLite, WAL, ``synchronous=FULL``, group-committed like the ledger), so an
acknowledgement means durable on an edge too: a Redis outage, a Redis restart that lost the
stream, and a crash of the edge itself lose nothing. The sender forgets a row only once the
ledger writer has confirmed it.

Rows are numbered by ``AUTOINCREMENT`` (never reused, even after every row is forgotten), and
the file has an id of its own (``box``), made when it is created: box and number name an event
for ever, so a row sent twice is appended once (the ledger keeps each box's mark), and a fresh
data directory never collides with an old one's numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.attendance.events import GENESIS, Event
from server.attendance.group_commit import GroupCommit
from server.attendance.ledger import Appended, now_ms
from server.attendance.writer import (
    UNWRITABLE,
    LedgerWriteError,
    connect,
    immediate,
    refusal,
)
from server.cluster.stream import APPLIED, ENTRY, READ_COUNT, STREAM, entry_text
from server.schema import upgrade

log = logging.getLogger(__name__)

CONFIRM_POLL_S = 0.25  # how often an edge asks whether what it sent is in the ledger
RESEND_AFTER_S = 5.0  # unconfirmed this long: is what was sent still in the stream?

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
        upgrade(self._db, "outbox.sqlite3")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('box', ?)", (secrets.token_hex(8),))
        self.box: str = self._db.execute("SELECT value FROM meta WHERE key = 'box'").fetchone()[0]

    def add(self, rows: list[Row]) -> int:
        """Append in one durable commit; the last row's number."""
        db = self._db
        with immediate(db):
            db.executemany(
                "INSERT INTO outbox (session, kind, data, at_ms, node) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return self._last()

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
        first = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
        last = self._last()
        return (first - 1 if first is not None else last), last

    def _last(self) -> int:
        """The last row number given (AUTOINCREMENT's own record: kept when rows are not)."""
        found = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return found[0] if found else 0

    def close(self) -> None:
        self._db.close()


class StreamLedger:
    """What an edge node's attendance tracker writes to: its outbox, then the stream.

    ``submit`` resolves once the event is in the outbox, on this node's disk: an edge's
    acknowledgement means durable, as the home node's does. A sender sends the outbox to the
    stream in order and forgets rows once the ledger writer has confirmed them
    (``lr:applied``). Redis unreachable: rows wait on disk, however long. Redis back without
    the entries it had taken (restarted with no persistence): the writer's confirmation stalls
    and the last entry sent is gone, so the unconfirmed rows are sent again, and appended once.
    """

    def __init__(
        self, redis: aioredis.Redis, instance: str, path: Path, commit_interval_s: float = 0.0
    ) -> None:
        """``commit_interval_s``: least time between two of the outbox's commits, as the
        ledger's (``LR_LEDGER_COMMIT_INTERVAL``)."""
        self._redis = redis
        self.instance = instance
        self._outbox = Outbox(path)
        self.box = self._outbox.box
        # every row up to ``confirmed`` is in the ledger; up to ``_sent_upto`` in the stream
        self.confirmed, self.stored = self._outbox.bounds()
        self._sent_upto = self.confirmed
        self._last_entry: str | None = None  # the stream id of the last row sent
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._group: GroupCommit[Row, Appended] = GroupCommit(self._store, commit_interval_s)
        self._sender: asyncio.Task | None = None
        self._wake = asyncio.Event()  # something to send, or stop
        self._all_sent = asyncio.Event()  # every row stored is in the stream
        self._closing = False
        self.sent = 0
        self.resent = 0
        self.failing_since: float | None = None

    @property
    def backlog(self) -> int:
        """Events on this node's disk that the ledger has not confirmed yet."""
        return self.stored - self.confirmed

    def start(self) -> None:
        """Send what the outbox holds (a previous run's rows too) and whatever comes."""
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_loop())

    def submit(self, session: str, event: Event, at_ms: int | None = None) -> asyncio.Future:
        try:
            data = json.dumps(event.data(), ensure_ascii=False, allow_nan=False)
            data.encode()  # a lone surrogate fails here, not the whole outbox commit later
        except UNWRITABLE as exc:
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(refusal(event.kind, exc))
            return refused
        return self._group.submit((session, event.kind, data, at_ms or now_ms(), self.instance))

    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        return await self.submit(session, event, at_ms)

    async def _store(self, rows: list[Row]) -> list[Appended]:
        """One group commit of submitted rows to the outbox (GroupCommit's commit)."""
        loop = asyncio.get_running_loop()
        try:
            self.stored = await loop.run_in_executor(self._executor, self._outbox.add, rows)
        except Exception as exc:  # noqa: BLE001 - every waiter hears of it
            raise LedgerWriteError(f"the attendance outbox refused it: {exc}") from exc
        self._all_sent.clear()
        self._wake.set()
        return [Appended(0, "", row[3]) for row in rows]

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        stalled_since: float | None = None
        while not self._closing:
            self._wake.clear()
            try:
                if self._sent_upto < self.stored:
                    await self._send_next()
                if self.confirmed < self._sent_upto:
                    if await self._confirm():
                        stalled_since = None
                    elif stalled_since is None:
                        stalled_since = loop.time()
                    elif loop.time() - stalled_since > RESEND_AFTER_S:
                        stalled_since = loop.time()
                        if await self._lost():
                            lost = self._sent_upto - self.confirmed
                            log.warning(
                                "Redis no longer holds %d attendance events sent to it"
                                " (restarted?): sending them again",
                                lost,
                            )
                            self.resent += lost
                            self._sent_upto = self.confirmed
            except (RedisError, OSError) as exc:
                if self.failing_since is None:
                    self.failing_since = loop.time()
                    log.warning("Redis unreachable (%s): attendance kept on disk", exc)
                await self._pause(1.0)
                continue
            except Exception:  # noqa: BLE001 - the outbox keeps it; try again
                log.exception("sending attendance from the outbox failed; trying again")
                await self._pause(1.0)
                continue
            if self.failing_since is not None:
                log.warning("Redis back: sending %d kept attendance events", self.backlog)
                self.failing_since = None
            if self._sent_upto >= self.stored:
                self._all_sent.set()
                await self._pause(None if self.confirmed >= self._sent_upto else CONFIRM_POLL_S)

    async def _pause(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _send_next(self) -> None:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(
            self._executor, self._outbox.after, self._sent_upto, READ_COUNT
        )
        if not rows:  # confirmed meanwhile
            self._sent_upto = max(self._sent_upto, self.confirmed)
            return
        base = self.confirmed  # the mark last heard of (the ledger's own may be lower)
        box = self.box
        async with self._redis.pipeline(transaction=False) as pipe:
            for seq, session, kind, data, at_ms, node in rows:
                pipe.xadd(
                    STREAM, {ENTRY: entry_text(box, seq, base, session, kind, at_ms, node, data)}
                )
            ids = await pipe.execute()
        self._last_entry = ids[-1]
        self._sent_upto = rows[-1][0]
        self.sent += len(rows)

    async def _confirm(self) -> bool:
        """Forget the rows the writer has confirmed since; whether there were any."""
        applied = int(await self._redis.hget(APPLIED, self.box) or 0)
        if applied <= self.confirmed:
            return False
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._outbox.forget, applied
        )
        self.confirmed = applied
        self._sent_upto = max(self._sent_upto, applied)
        return True

    async def _lost(self) -> bool:
        """The last entry sent is neither in the stream nor confirmed: Redis lost it."""
        if self._last_entry is None:
            return True
        if await self._redis.xrange(STREAM, self._last_entry, self._last_entry):
            return False  # waiting for the writer, which is down or behind
        return int(await self._redis.hget(APPLIED, self.box) or 0) < self._sent_upto

    async def aclose(self, timeout: float = 3.0) -> None:
        """Send what is stored (waiting at most ``timeout``), then stop. What is not sent
        stays in the outbox for the next start."""
        await self._group.idle(timeout)
        if self._sender is not None and self.stored > self._sent_upto:
            try:
                await asyncio.wait_for(self._all_sent.wait(), timeout)
            except TimeoutError:
                pass
        self._closing = True
        self._wake.set()
        if self._sender is not None:
            # bounded: a cancellation lost inside a Redis call must not hold the stop
            _, pending = await asyncio.wait({self._sender}, timeout=timeout)
            for task in pending:
                task.cancel()
        self.close()

    # What the tracker reads of a ledger: an edge has none of its own.
    def open_sessions(self) -> list[str]:
        return []

    def unsigned_sessions(self) -> list[str]:
        return []

    def rows(self, session: str) -> list:
        return []

    def scan(self, session: str) -> Iterator[tuple]:
        return iter(())

    def append_now(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        raise RuntimeError("an edge has no sessions to recover: it appends through submit")

    def head(self, session: str) -> tuple[int, str]:
        return 0, GENESIS

    def checkpoints(self, session: str) -> list:
        return []

    async def store_checkpoint(self, cp) -> None: ...

    # -- the AttendanceSink surface beside the appends (server/attendance/sink.py) -------------
    holds_record = False  # the home node's ledger holds it

    def follow(self, callback) -> None:
        """Nothing to follow here: the home node's reports follow its own ledger."""

    def status(self) -> dict:
        """What waits for the home node's ledger."""
        return {"backlog": self.backlog, "sent": self.sent, "resent": self.resent}

    def measures(self) -> list[tuple[str, str, str, float]]:
        return [
            ("lr_attendance_backlog", "gauge",
             "Attendance events on this node's disk that the home node's ledger has not"
             " confirmed yet.", self.backlog),
            ("lr_attendance_sent_total", "counter", "Attendance events sent to Redis.",
             self.sent),
            ("lr_attendance_resent_total", "counter",
             "Attendance events sent again because Redis no longer held them.", self.resent),
        ]  # fmt: skip

    def histograms(self) -> list:
        return []

    def close(self) -> None:
        if self.stored > self._sent_upto:
            log.warning(
                "%d attendance events not yet sent to Redis: kept in the outbox for the next start",
                self.stored - self._sent_upto,
            )
        self._executor.shutdown(wait=True)
        self._outbox.close()
