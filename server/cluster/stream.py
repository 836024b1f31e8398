"""Attendance through a Redis Stream (cluster mode).

Edge nodes hold no ledger: their attendance events go first into an outbox on their own disk
(the event is acknowledged then), then into the stream ``lr:attendance`` (outbox.py's
``StreamLedger``). One ledger writer (``StreamWriter``: in the home node, or the
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

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from server.attendance.events import Event, Leave, event_from
from server.attendance.ledger import Ledger

log = logging.getLogger(__name__)

STREAM = "lr:attendance"
GROUP = "ledger"
OPEN_PREFIX = "lr:open:"
READ_COUNT = 500
CLAIM_IDLE_MS = 30_000
ENTRY = "e"  # an entry's one field (entry_text)
# hash: an edge's outbox id -> its mark (the ledger's outbox_marks, told to the edges)
APPLIED = "lr:applied"


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
                session, event, at_ms, key, node = _read_entry(entry_id, fields)
            except _Malformed as exc:
                log.error("stream entry %s is malformed (%s); skipped", entry_id, exc)
                if exc.key is not None:  # counted as handled, or its edge would send it for ever
                    batch.append(("", None, 0, exc.key))
                continue
            batch.append((session, event, at_ms, key))
            peer = getattr(event, "peer", None)
            if node and peer and event.kind in ("join", "heartbeat", "seen"):
                opened.setdefault(node, {})[peer] = f"{session} {at_ms}"
            elif node and peer and event.kind == "leave":
                opened.get(node, {}).pop(peer, None)
                closed.setdefault(node, []).append(peer)
        marks = {}
        if batch:
            self.applied += await asyncio.to_thread(self.ledger.apply_stream, batch)
            self.on_written({s for s, e, *_ in batch if e is not None})
            boxes = {key[0] for *_, key in batch if type(key) is tuple}
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


def entry_text(
    box: str, row: int, base: int, session: str, kind: str, at_ms: int, node: str, data: str
) -> str:
    """A stream entry's one field: a JSON array, the event's data (JSON already) last. One
    field, not nine: redis-py's parser and packer cost per field, and at 3,000 events a second
    nine of them were most of the stream's CPU (scripts/bench_stream.py)."""
    head = json.dumps([box, row, base, session, kind, at_ms, node], ensure_ascii=False)
    return f"{head[:-1]},{data}]"


class _Malformed(ValueError):
    def __init__(self, reason: str, key: tuple[str, int, int] | None) -> None:
        super().__init__(reason)
        self.key = key


def _read_entry(entry_id: str, fields: dict) -> tuple[str, Event, int, object, str]:
    """(session, event, at_ms, key, node) of an entry: an outbox's (box, row, base) as its key,
    else its sender's "eid" (an edge of the sixth session's kind) or its stream id."""
    text = fields.get(ENTRY)
    if text is not None:
        key = None
        try:
            box, row, base, session, kind, at_ms, node, data = json.loads(text)
            key = (str(box), int(row), int(base))
            return session, event_from(kind, data), int(at_ms), key, node
        except (TypeError, ValueError, KeyError) as exc:
            raise _Malformed(str(exc), key) from None
    try:
        event = event_from(fields["kind"], json.loads(fields["data"]))
        key = fields.get("eid") or entry_id
        return fields["session"], event, int(fields["at_ms"]), key, fields.get("node", "")
    except (KeyError, TypeError, ValueError) as exc:
        raise _Malformed(str(exc), None) from None
