"""Attendance through a Redis Stream (cluster mode).

Edge nodes hold no ledger: their attendance events go into the stream ``lr:attendance``
(``StreamLedger``). One ledger writer (``StreamWriter``: in the home node, or the
``lecture-relay ledger-writer`` process) reads it through the consumer group ``ledger``, appends
each entry to the SQLite ledger in one durable commit together with its stream id, and only
then acknowledges it. A writer that is killed re-reads what it had not acknowledged when it
comes back, and the entries already in the ledger are skipped by their id (the sender's own
id, so an XADD retried after a timeout that had in fact reached Redis counts once too): every
event once.

The writer also closes the intervals of a node that died: it keeps each node's open
connections in ``lr:open:<node>/<instance>`` and, once that instance's registry entry has
lapsed, appends a leave with reason ``node_lost`` at each connection's last evidence.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from server.attendance.events import GENESIS, Event, Leave, event_from
from server.attendance.ledger import Appended, Ledger, now_ms

log = logging.getLogger(__name__)

STREAM = "lr:attendance"
GROUP = "ledger"
OPEN_PREFIX = "lr:open:"
READ_COUNT = 500
CLAIM_IDLE_MS = 30_000


class StreamLedger:
    """What an edge node's attendance tracker writes to: the stream, not a file.

    An event is accepted at once; it is sent in order, and kept in memory while Redis is
    unreachable (viewers keep watching) until it can be sent: up to ``limit``
    (``LR_ATTENDANCE_BUFFER``), past which the oldest are dropped, counted
    (``lr_attendance_dropped_total``) and logged once an outage."""

    def __init__(self, redis: aioredis.Redis, instance: str, limit: int = 200_000) -> None:
        self._redis = redis
        self.instance = instance
        self.limit = limit
        self._buffer: deque[dict] = deque()
        self._flusher: asyncio.Task | None = None
        self._next_id = 0
        self.sent = 0
        self.dropped = 0
        self.dropping = False  # since the last send: the first drop of an outage is logged
        self.failing_since: float | None = None

    def submit(self, session: str, event: Event, at_ms: int | None = None) -> asyncio.Future:
        at = at_ms or now_ms()
        if len(self._buffer) >= self.limit:
            self._buffer.popleft()
            if not self.dropping:
                log.error(
                    "Redis unreachable and %d attendance events kept: dropping the oldest"
                    " (lr_attendance_dropped_total counts them; LR_ATTENDANCE_BUFFER)",
                    self.limit,
                )
            self.dropped += 1
            self.dropping = True
        self._buffer.append(
            {
                "session": session,
                "kind": event.kind,
                "data": json.dumps(event.data(), ensure_ascii=False),
                "at_ms": str(at),
                "node": self.instance,
                # A send that timed out may still have reached Redis: the retry adds the
                # entry again, and the writer keeps the first of each id.
                "eid": f"{self.instance}:{self._next_id}",
            }
        )
        self._next_id += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        future = asyncio.get_running_loop().create_future()
        future.set_result(Appended(0, "", at))
        return future

    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        return await self.submit(session, event, at_ms)

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buffer:
            batch = [self._buffer[i] for i in range(min(len(self._buffer), READ_COUNT))]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for fields in batch:
                        pipe.xadd(STREAM, fields)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                if self.failing_since is None:
                    self.failing_since = loop.time()
                    log.warning("Redis unreachable (%s): attendance kept in memory", exc)
                await asyncio.sleep(1.0)
                continue
            if self.failing_since is not None:
                log.warning("Redis back: sending %d kept attendance events", len(self._buffer))
                self.failing_since = None
            for _ in batch:
                self._buffer.popleft()
            self.sent += len(batch)
            self.dropping = False

    async def drain(self, timeout: float = 5.0) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher}, timeout=timeout)

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
        if self._buffer:
            log.warning("%d attendance events not sent to Redis at shutdown", len(self._buffer))


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
        for entry_id, fields in entries:
            try:
                event = event_from(fields["kind"], json.loads(fields["data"]))
                key = fields.get("eid") or entry_id
                batch.append((fields["session"], event, int(fields["at_ms"]), key))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("stream entry %s is malformed (%s); skipped", entry_id, exc)
                continue
            node, peer = fields.get("node", ""), getattr(event, "peer", None)
            if node and peer and event.kind in ("join", "heartbeat"):
                opened.setdefault(node, {})[peer] = f"{fields['session']} {fields['at_ms']}"
            elif node and peer and event.kind == "leave":
                opened.get(node, {}).pop(peer, None)
                closed.setdefault(node, []).append(peer)
        if batch:
            self.applied += await asyncio.to_thread(self.ledger.apply_stream, batch)
            self.on_written({s for s, *_ in batch})
        async with self._redis.pipeline(transaction=False) as pipe:
            for node, peers in closed.items():
                pipe.hdel(OPEN_PREFIX + node, *peers)
            for node, peers in opened.items():
                pipe.hset(OPEN_PREFIX + node, mapping=peers)
            pipe.xack(STREAM, GROUP, *[i for i, _ in entries])
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
