"""The ledger's writing side: appends into each session's hash chain, and checkpoints.

Under the server it runs in a process of its own (``WriterProcess``): encoding, hashing and
binding thousands of events a second held the interpreter lock the event loop needs, and
made heartbeats wait (docs/DECISIONS.md). The CLI and tests may write in their own thread
(``Writer``). Either way one writer commits at a time, in the order appends were handed to it.

Over 500 lines on purpose: the writer, its child process and the wire between them (a
socket pair, length-prefixed pickles of batches and answers) are one protocol, read and
changed together; split, each half would hold the other's framing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from server.attendance.events import GENESIS, Event, canonical, chain_hash, data_json
from server.files import private_file
from server.histogram import Histogram
from server.schema import upgrade

log = logging.getLogger(__name__)

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
-- its XACK reads them again and must not append them twice. (Entries named by id; an edge's
-- outbox rows are counted by outbox_marks instead, one row per edge, not one per event.)
CREATE TABLE IF NOT EXISTS stream_applied (id TEXT PRIMARY KEY) WITHOUT ROWID;
-- Per cluster edge's outbox: every row of it up to ``mark`` is in the ledger.
CREATE TABLE IF NOT EXISTS outbox_marks (box TEXT PRIMARY KEY, mark INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

# (session, event, at_ms, key): the key makes an entry from the Redis stream count once:
# a stream id, or an edge outbox's (box, row number, the mark its sender had heard of), in
# which case the event may be None (unreadable: it only moves the mark). None: no key.
OutboxKey = tuple[str, int, int]
Entry = tuple[str, "Event | None", int, "str | OutboxKey | None"]
# (session, seq, head, at_ms, final, key fingerprint, signature)
CheckpointFields = tuple[str, int, str, int, int, str, str]


@dataclass(frozen=True)
class Appended:
    seq: int
    hash: str
    at_ms: int


class LedgerWriteError(RuntimeError):
    """The writer refused a batch (rolled back: the reason says why), or is gone (then
    whether the batch in flight was committed is unknown)."""


class EventRefused(LedgerWriteError):
    """One event of a batch that cannot be written (text that is not valid Unicode, a number
    JSON cannot carry): it alone is refused, in the batch's answer in its place, and its
    batch-mates are committed. (One lone surrogate had rolled back every event with it.)"""


UNWRITABLE = (ValueError, TypeError, OverflowError)  # what encoding an event may raise


def refusal(kind: str, exc: Exception) -> EventRefused:
    """The refusal of a ``kind`` event that encoding raised ``exc`` for (one of UNWRITABLE)."""
    if isinstance(exc, UnicodeError):
        why = "its text is not valid Unicode"
    elif isinstance(exc, ValueError):
        why = "it holds a number JSON cannot carry"
    else:
        why = f"it cannot be encoded ({type(exc).__name__})"
    return EventRefused(f"a {kind} event was refused: {why}")


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (``BEGIN IMMEDIATE``): committed if the block ends, else rolled
    back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(private_file(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Writer:
    """Writes in the caller's thread (one thread at a time)."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        upgrade(self._db, "ledger.sqlite3")
        self.last_write_s = 0.0  # how long the last append took, its fsync included

    def append(self, batch: list[Entry]) -> list[Appended | EventRefused | None]:
        """One durable commit for the batch; ``None`` for a stream entry already applied, an
        ``EventRefused`` for an event that cannot be encoded (a stream entry's key is taken
        all the same: it would be refused again each time it came)."""
        started = time.perf_counter()
        db = self._db
        out: list[Appended | EventRefused | None] = []
        touched: dict[str, tuple[int, str]] = {}
        rows: list[tuple] = []
        marks: dict[str, int] = {}
        with immediate(db):
            for session, event, at_ms, key in batch:
                if type(key) is tuple:
                    if not self._next_of_outbox(marks, *key) or event is None:
                        out.append(None)
                        continue
                elif key is not None:
                    seen = db.execute(
                        "SELECT 1 FROM stream_applied WHERE id = ?", (key,)
                    ).fetchone()
                    if seen:
                        out.append(None)
                        continue
                    db.execute("INSERT INTO stream_applied (id) VALUES (?)", (key,))
                seq, prev = touched.get(session) or self._head(session)
                seq += 1
                try:
                    encoded = data_json(event.data())
                    body = canonical(session, seq, at_ms, event.kind, {}, encoded)
                except UNWRITABLE as exc:
                    refused = refusal(event.kind, exc)
                    log.error("%s (session %r)", refused, session)
                    out.append(refused)
                    continue
                digest = chain_hash(prev, body)
                rows.append((session, seq, at_ms, event.kind, encoded, prev, digest))
                touched[session] = (seq, digest)
                out.append(Appended(seq, digest, at_ms))
            _insert(db, rows)
            if marks:
                db.executemany("INSERT OR REPLACE INTO outbox_marks VALUES (?, ?)", marks.items())
        self.last_write_s = time.perf_counter() - started
        return out

    def _next_of_outbox(self, marks: dict[str, int], box: str, row: int, base: int) -> bool:
        """Whether an edge's outbox row is the next one of that outbox (then the mark moves
        to it). Not the next: a duplicate (at or below the mark), or past rows that Redis
        lost, which the edge sends again, this one with them: so an outbox's events go into
        the ledger once each, in the order the edge had them."""
        mark = marks.get(box)
        if mark is None:
            found = self._db.execute(
                "SELECT mark FROM outbox_marks WHERE box = ?", (box,)
            ).fetchone()
            mark = found[0] if found else 0
        if base > mark:
            # the edge forgot rows this ledger lacks: it was told they were in (a ledger
            # restored from an older copy?). They are gone; go on from where the edge is.
            log.error("the ledger lacks rows %d-%d of edge outbox %s", mark + 1, base, box)
            mark = base
        marks[box] = row if row == mark + 1 else mark
        return row == mark + 1

    def _head(self, session: str) -> tuple[int, str]:
        # Read inside the write transaction, not from a cache: another process (the CLI
        # recording an export) may have appended since.
        row = self._db.execute(
            "SELECT seq, hash FROM events WHERE session = ? ORDER BY seq DESC LIMIT 1",
            (session,),
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def save_checkpoint(self, fields: CheckpointFields) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO checkpoints"
            " (session, seq, head, at_ms, final, key_fp, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            fields,
        )

    def close(self) -> None:
        self._db.close()


class WriterThread:
    """``Writer``'s calls made on one thread of this process: blocking callers wait for it,
    the event loop awaits it. For the CLI, tests, and ``LR_LEDGER_PROCESS=0``; the same
    calls as ``WriterProcess``."""

    process = None  # no child

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._writer = Writer(path)
        self.write_seconds = Histogram()  # each append's time in the writer

    def append(self, batch: list[Entry]) -> list[Appended | None]:
        return self._executor.submit(self._append, batch).result()

    def save_checkpoint(self, fields: CheckpointFields) -> None:
        self._executor.submit(self._writer.save_checkpoint, fields).result()

    async def append_async(self, batch: list[Entry]) -> list[Appended | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._append, batch)

    def _append(self, batch: list[Entry]) -> list[Appended | None]:
        out = self._writer.append(batch)
        self.write_seconds.observe(self._writer.last_write_s)
        return out

    async def save_checkpoint_async(self, fields: CheckpointFields) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._writer.save_checkpoint, fields)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._writer.close()


@lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
    return f"INSERT INTO events (session, seq, at_ms, kind, data, prev, hash) VALUES {values}"


def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert a batch's rows with a few statements of many rows each, not one per row.

    sqlite3 lets go of the interpreter lock around every step of a statement (in a writer
    thread, each a hand-over to the event loop and back), and a statement per row costs more
    besides. The batch is split into powers of two up to 256 rows (7 values each; SQLite
    allows 32,766), so that a handful of statements, each prepared once and cached, serve
    every batch size."""
    i = 0
    while i < len(rows):
        n = min(256, 1 << ((len(rows) - i).bit_length() - 1))
        db.execute(_insert_sql(n), [v for row in rows[i : i + n] for v in row])
        i += n


class WriterProcess:
    """``Writer``'s calls answered by a child process over a socket pair (pickled requests
    out, sequence numbers and hashes back), one exchange at a time.

    The event loop's appends (``call_async``) wait for their answer on the loop itself, not
    in a thread: a thread handing batches to the child woke for the interpreter lock on
    every one of the loop's socket calls, and made the loop wait for it in turn
    (docs/DECISIONS.md). Other callers (start-up recovery, the CLI's tests, the cluster's
    stream writer on a worker thread) use ``append`` and ``save_checkpoint``, which block.

    The child ignores SIGINT and SIGTERM (a Ctrl-C or a service stop reaches the whole
    process group, and the server still drains its appends on the way out) and ends when
    its socket closes: when the server closes the ledger, or dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._lock = threading.Lock()  # one exchange at a time
        self._loop_thread: int | None = None  # the thread whose call_async holds the lock
        self.write_seconds = Histogram()  # each append's time in the child, as it says
        # a replacement child is started on a thread of its own: on the loop's default
        # executor it could wait behind reports and exports being built
        self._restarts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-restart")
        with self._lock:
            self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        root = Path(__file__).resolve().parents[2]
        paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server.attendance.writer",
                str(theirs.fileno()),
                str(self.path),
            ],
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._sock, self._buffer = ours, bytearray()
        self._answer(self._read_blocking())  # it has opened the database (or says why not)

    # -- blocking calls, from any thread ---------------------------------------------------
    def append(self, batch: list[Entry]) -> list[Appended | None]:
        return self._call(("append", batch))

    def save_checkpoint(self, fields: CheckpointFields) -> None:
        self._call(("checkpoint", fields))

    def _call(self, request: tuple) -> object:
        if not self._lock.acquire(blocking=False):
            if self._loop_thread == threading.get_ident():
                raise RuntimeError(
                    "a blocking ledger call on the event loop while its append is in flight"
                )
            self._lock.acquire()
        try:
            self._ensure_child()
            assert self._sock is not None
            try:
                self._sock.sendall(_frame(request))
            except OSError as exc:
                raise self._gone(repr(exc)) from None
            return self._answer(self._read_blocking())
        finally:
            self._lock.release()

    def _read_blocking(self) -> object:
        assert self._sock is not None
        while (reply := _unframe(self._buffer)) is None:
            try:
                chunk = self._sock.recv(READ_SIZE)
            except OSError as exc:
                chunk, reason = b"", repr(exc)
            else:
                reason = "it closed its end"
            if not chunk:
                raise self._gone(reason)
            self._buffer += chunk
        return reply

    # -- the event loop's calls ------------------------------------------------------------
    async def append_async(self, batch: list[Entry]) -> list[Appended | None]:
        return await self.call_async(("append", batch))

    async def save_checkpoint_async(self, fields: CheckpointFields) -> None:
        await self.call_async(("checkpoint", fields))

    async def call_async(self, request: tuple) -> object:
        """One exchange, its waits on the event loop. Another thread's blocking call in
        progress (rare: the cluster's stream writer) is waited out a millisecond at a time."""
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        done = False
        try:
            if self._child_ended():
                # a new child takes ~0.1-0.2 s to start and open the database: not on the loop
                await loop.run_in_executor(self._restarts, self._restart)
            sock = self._sock
            assert sock is not None
            sock.setblocking(False)
            try:
                await loop.sock_sendall(sock, _frame(request))
                while (reply := _unframe(self._buffer)) is None:
                    chunk = await loop.sock_recv(sock, READ_SIZE)
                    if not chunk:
                        break
                    self._buffer += chunk
            except OSError as exc:
                reply, reason = None, repr(exc)
            else:
                reason = "it closed its end"
            finally:
                sock.setblocking(True)
            if reply is None:
                raise self._gone(reason)
            done = True
            return self._answer(reply)
        finally:
            if not done and self._sock is not None:
                # cancelled mid-exchange: what the child answers would be read as the next
                # call's answer, so this child is done with
                self._lost()
            self._loop_thread = None
            self._lock.release()

    # -- both ------------------------------------------------------------------------------
    def _ensure_child(self) -> None:
        if self._child_ended():
            self._restart()

    def _child_ended(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def _restart(self) -> None:
        log.error(
            "the ledger writer process had ended (%s); starting another",
            self.process and self.process.returncode,
        )
        self._lost()
        self._start()

    def _gone(self, reason: str) -> LedgerWriteError:
        """The child is done with (it died, or its socket failed): the error to raise."""
        self._lost()
        return LedgerWriteError(f"the ledger writer process is gone ({reason})")

    def _answer(self, reply: object) -> object:
        status, value, *took = reply  # type: ignore[misc]
        if status != "ok":
            raise LedgerWriteError(value)
        if took:  # an append's answer says how long the child took to write it
            self.write_seconds.observe(took[0])
        return value

    def _lost(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self._restarts.shutdown(wait=False)
        with self._lock:
            if self._sock is not None:
                self._sock.close()  # the child's cue to finish
                self._sock = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


READ_SIZE = 1 << 16


def _frame(request: tuple) -> bytes:
    """A request as ``multiprocessing.connection.Connection.recv`` (the child) reads it: a
    4-byte big-endian length, then the pickle."""
    payload = ForkingPickler.dumps(request)
    return struct.pack("!i", len(payload)) + payload


def _unframe(buffer: bytearray) -> object | None:
    """The first whole message in ``buffer`` (taken out of it), as the child's
    ``Connection.send`` framed it; None while it is not all there."""
    if len(buffer) < 4:
        return None
    (size,) = struct.unpack_from("!i", buffer)
    start = 4
    if size == -1:  # over 2 GiB: an 8-byte length follows
        if len(buffer) < 12:
            return None
        (size,) = struct.unpack_from("!Q", buffer, 4)
        start = 12
    if len(buffer) < start + size:
        return None
    message = pickle.loads(buffer[start : start + size])
    del buffer[: start + size]
    return message


def serve(conn: Connection, path: Path) -> None:
    """The child's loop: one request at a time, each answered ``("ok", value)`` (an append's
    with the seconds it took as well) or ``("error", reason)``, until the server closes its
    end."""
    try:
        writer = Writer(path)
    except Exception as exc:  # noqa: BLE001 - the server hears why and stops
        conn.send(("error", f"cannot open the ledger {path}: {exc}"))
        return
    conn.send(("ok", None))
    while True:
        try:
            kind, arg = conn.recv()
        except EOFError:
            break
        try:
            if kind == "append":
                reply = ("ok", writer.append(arg), writer.last_write_s)
            else:
                reply = ("ok", writer.save_checkpoint(arg))
        except Exception as exc:  # noqa: BLE001 - the batch failed; the writer goes on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(reply)
    writer.close()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # by its importable name, so that what it sends back unpickles as
    # server.attendance.writer.Appended, not as __main__'s
    from server.attendance import writer

    writer.serve(Connection(int(sys.argv[1])), Path(sys.argv[2]))
