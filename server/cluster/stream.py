"""Attendance through a Redis Stream (cluster mode).

Edge nodes hold no ledger: their attendance events go first into an outbox on their own disk
(outbox.py; the event is acknowledged then), then into the stream ``lr:attendance``
(``StreamLedger``). One ledger writer (``StreamWriter``: in the home node, or the
``lecture-relay ledger-writer`` process) reads it through the consumer group ``ledger``, appends
each entry to the SQLite ledger in one durable commit, together with how far each edge's
outbox is now in the ledger (its mark: every row up to it), and only then acknowledges and
deletes the entries and tells the edges their marks (``lr:applied``), so they can forget those
rows. An outbox row is appended only if it is the next after its outbox's mark: a duplicate (a
writer killed before its XACK re-reads it; an XADD retried after a timeout that had in fact
reached Redis) is skipped, and one past rows Redis lost waits for the edge to send them all
again. Every event once, each edge's in its order.

The writer also closes the intervals of a node that died: it keeps each node's open
connections in ``lr:open:<node>/<instance>`` and, once that instance's registry entry has
lapsed, appends a leave with reason ``node_lost`` at each connection's last evidence.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from server.attendance.events import GENESIS, Event, Leave, event_from
from server.attendance.ledger import Appended, Ledger, now_ms
from server.attendance.writer import LedgerWriteError
from server.cluster.outbox import Outbox, Row

log = logging.getLogger(__name__)

STREAM = "lr:attendance"
GROUP = "ledger"
OPEN_PREFIX = "lr:open:"
READ_COUNT = 500
CLAIM_IDLE_MS = 30_000
# hash: an edge's outbox id -> its mark (the ledger's outbox_marks, told to the edges)
APPLIED = "lr:applied"
CONFIRM_POLL_S = 0.25  # how often an edge asks whether what it sent is in the ledger
RESEND_AFTER_S = 5.0  # unconfirmed this long: is what was sent still in the stream?


class StreamLedger:
    """What an edge node's attendance tracker writes to: its outbox, then the stream.

    ``submit`` resolves once the event is in the outbox, on this node's disk (outbox.py): an
    edge's acknowledgement means durable, as the home node's does. A sender sends the outbox
    to the stream in order and forgets rows once the ledger writer has confirmed them
    (``lr:applied``). Redis unreachable: rows wait on disk, however long. Redis back without
    the entries it had taken (restarted with no persistence): the writer's confirmation stalls
    and the last entry sent is gone, so the unconfirmed rows are sent again, and appended once.
    """

    def __init__(self, redis: aioredis.Redis, instance: str, path: Path) -> None:
        self._redis = redis
        self.instance = instance
        self._outbox = Outbox(path)
        self.box = self._outbox.box
        # every row up to ``confirmed`` is in the ledger; up to ``_sent_upto`` in the stream
        self.confirmed, self.stored = self._outbox.bounds()
        self._sent_upto = self.confirmed
        self._last_entry: str | None = None  # the stream id of the last row sent
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._pending: list[tuple[Row, int, asyncio.Future]] = []
        self._storing: asyncio.Task | None = None
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
        at = at_ms or now_ms()
        data = json.dumps(event.data(), ensure_ascii=False)
        future = asyncio.get_running_loop().create_future()
        self._pending.append(((session, event.kind, data, at, self.instance), at, future))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.ensure_future(self._store())
        return future

    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        return await self.submit(session, event, at_ms)

    async def _store(self) -> None:
        """Group commit: whatever was submitted while a commit was in flight goes in the next."""
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                rows = [row for row, _, _ in batch]
                last = await loop.run_in_executor(self._executor, self._outbox.add, rows)
            except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                failure = LedgerWriteError(f"the attendance outbox refused it: {exc}")
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            self.stored = last
            self._all_sent.clear()
            self._wake.set()
            for _, at, future in batch:
                if not future.done():
                    future.set_result(Appended(0, "", at))

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
        base = str(self.confirmed)  # the writer's watermark may be behind (Redis lost it)
        async with self._redis.pipeline(transaction=False) as pipe:
            for seq, session, kind, data, at_ms, node in rows:
                pipe.xadd(
                    STREAM,
                    {
                        "session": session,
                        "kind": kind,
                        "data": data,
                        "at_ms": str(at_ms),
                        "node": node,
                        "box": self.box,
                        "seq": str(seq),
                        "base": base,
                    },
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
        if self._storing is not None:
            await asyncio.wait({self._storing}, timeout=timeout)
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

    def rows(self, session: str) -> list:
        return []

    def head(self, session: str) -> tuple[int, str]:
        return 0, GENESIS

    def checkpoints(self, session: str) -> list:
        return []

    async def store_checkpoint(self, cp) -> None: ...

    def close(self) -> None:
        if self.stored > self._sent_upto:
            log.warning(
                "%d attendance events not yet sent to Redis: kept in the outbox for the next start",
                self.stored - self._sent_upto,
            )
        self._executor.shutdown(wait=True)
        self._outbox.close()


class StreamWriter:
    """The consumer group's one reader: stream entries into the ledger, each exactly once."""

    def __init__(
        self,
        redis: aioredis.Redis,
        ledger: Ledger,
        consumer: str = "ledger-writer",
        on_written=None,
        lost_after_s: float = 12.0,
    ) -> None:
        self._redis = redis
        self.ledger = ledger
        self.consumer = consumer
        self.on_written = on_written or (lambda sessions: None)
        self.applied = 0
        self.closed_lost = 0
        # A node is lost once its registry entry has been missing this long *as we saw it*:
        # after a Redis outage every entry has lapsed, and live nodes re-register within a
        # third of their TTL, so their connections must not be closed.
        self.lost_after_s = lost_after_s
        self._missing_since: dict[str, float] = {}
        self._stop = asyncio.Event()

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Until stopped: first what this consumer had not acknowledged, then new entries."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                await self.ensure_group()
                await self._catch_up()
                reaping = asyncio.Event()  # set: the reaper ends at its next turn
                reaper = asyncio.ensure_future(self._reap_loop(reaping))
                try:
                    while not self._stop.is_set():
                        await self._read(">", block_ms=1000)
                finally:
                    reaping.set()
                    reaper.cancel()
                    await asyncio.gather(reaper, return_exceptions=True)
            except (RedisError, OSError) as exc:
                self._missing_since.clear()  # what we saw before the outage proves nothing
                log.warning("ledger writer: Redis unreachable (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.5

    def stop(self) -> None:
        self._stop.set()

    async def _catch_up(self) -> None:
        while await self._read("0", block_ms=None):
            pass
        # entries a consumer of another name read and never acknowledged (a renamed writer)
        _, claimed, *_ = await self._redis.xautoclaim(
            STREAM, GROUP, self.consumer, CLAIM_IDLE_MS, "0-0", count=READ_COUNT
        )
        if claimed:
            await self._apply(claimed)

    async def _read(self, start: str, block_ms: int | None) -> int:
        reply = await self._redis.xreadgroup(
            GROUP, self.consumer, {STREAM: start}, count=READ_COUNT, block=block_ms
        )
        entries = reply[0][1] if reply else []
        entries = [(i, f) for i, f in entries if f]  # deleted entries come back empty
        if entries:
            await self._apply(entries)
        return len(entries)

    async def _apply(self, entries: list) -> None:
        batch = []
        opened: dict[str, dict[str, str]] = {}
        closed: dict[str, list[str]] = {}
        boxes = set()
        for entry_id, fields in entries:
            key = _outbox_key(fields)
            if key is not None:
                boxes.add(key[0])
            try:
                event = event_from(fields["kind"], json.loads(fields["data"]))
                # an entry from an edge of the sixth session's kind is named by its "eid"
                name = key or fields.get("eid") or entry_id
                batch.append((fields["session"], event, int(fields["at_ms"]), name))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("stream entry %s is malformed (%s); skipped", entry_id, exc)
                if key is not None:  # counted as handled, or its edge would send it for ever
                    batch.append(("", None, 0, key))
                continue
            node, peer = fields.get("node", ""), getattr(event, "peer", None)
            if node and peer and event.kind in ("join", "heartbeat"):
                opened.setdefault(node, {})[peer] = f"{fields['session']} {fields['at_ms']}"
            elif node and peer and event.kind == "leave":
                opened.get(node, {}).pop(peer, None)
                closed.setdefault(node, []).append(peer)
        marks = {}
        if batch:
            self.applied += await asyncio.to_thread(self.ledger.apply_stream, batch)
            self.on_written({s for s, e, *_ in batch if e is not None})
            marks = self.ledger.outbox_marks(sorted(boxes))
        ids = [i for i, _ in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            for node, peers in closed.items():
                pipe.hdel(OPEN_PREFIX + node, *peers)
            for node, peers in opened.items():
                pipe.hset(OPEN_PREFIX + node, mapping=peers)
            if marks:  # told each time, even unmoved: Redis may have lost them
                pipe.hset(APPLIED, mapping=marks)
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)  # in the ledger, or to come again: not kept
            await pipe.execute()

    async def _reap_loop(self, until: asyncio.Event) -> None:
        """Reap every second until ``until`` is set. Its cancellation alone is not enough: a
        cancel that lands inside a Redis call can be lost (the task then sleeps and reaps on,
        and a stop waited for it for ever: 1 of 8 stops of an idle writer, measured)."""
        while not until.is_set():
            await asyncio.sleep(1.0)
            if not until.is_set():
                await self.reap_lost_nodes()

    async def reap_lost_nodes(self) -> int:
        """Close the open connections of node instances whose registry entry has lapsed."""
        closed = 0
        now = asyncio.get_running_loop().time()
        async for key in self._redis.scan_iter(match=OPEN_PREFIX + "*", count=100):
            instance = key[len(OPEN_PREFIX) :]
            node_id, _, started = instance.rpartition("/")
            if await self._redis.hget(f"lr:node:{node_id}", "instance") == started:
                self._missing_since.pop(instance, None)
                continue
            since = self._missing_since.setdefault(instance, now)
            if now - since < self.lost_after_s:
                continue
            self._missing_since.pop(instance, None)
            peers = await self._redis.hgetall(key)
            batch = []
            for peer, where in peers.items():
                session, _, last_ms = where.partition(" ")
                batch.append((session, Leave(peer, "node_lost"), int(last_ms), None))
            if batch:
                await asyncio.to_thread(self.ledger.apply_stream, batch)
                self.on_written({s for s, *_ in batch})
                log.warning("node %s lost: closed %d attendance intervals", instance, len(batch))
            await self._redis.delete(key)
            closed += len(batch)
        self.closed_lost += closed
        return closed


def _outbox_key(fields: dict) -> tuple[str, int, int] | None:
    """An edge's outbox row: (box, row number, the mark its edge had heard of)."""
    try:
        return fields["box"], int(fields["seq"]), int(fields.get("base", 0))
    except (KeyError, ValueError):
        return None
