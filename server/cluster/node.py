"""This node in a cluster: its registry entry, where a viewer goes, edges pulling the lecture.

Redis keys (all small; nothing per packet):
- ``lr:node:<id>`` hash {url, pipe_host, instance, load, capacity, home}, expiring after the
  node TTL unless refreshed (every TTL/3); ``lr:nodes`` the set of ids ever seen.
- ``lr:session:<sid>`` hash {video_codec, origin, status}: written by the node that holds the
  session's publisher (its origin) and by the home node.
- ``lr:control`` pub/sub: {"type": "origin"|"end", "session", "node"}.

A WHEP offer arriving at any node goes to the least-loaded live node (load / capacity): served
here, or answered 307 with that node's URL (WHEP allows it). A node that is not the origin
pulls the session from it as plain RTP over UDP, once, and fans it out to its own workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from media.session import SessionMedia
from server.config import Config
from server.interprocess import INTERNAL_HEADER
from server.refusals import Refused, Unavailable, Unreachable

log = logging.getLogger(__name__)

CONTROL = "lr:control"
NODES = "lr:nodes"


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeInfo:
    id: str
    url: str
    pipe_host: str
    instance: str
    load: int
    capacity: int
    home: bool

    @property
    def share(self) -> float:
        return self.load / max(self.capacity, 1)


def session_key(sid: str) -> str:
    return f"lr:session:{sid}"


class Cluster:
    def __init__(
        self,
        config: Config,
        token: str,
        load: Callable[[], int],
        capacity: int,
    ) -> None:
        self.config = config
        self.id = config.node_name
        self.instance = secrets.token_hex(4)
        self.url = config.base_url
        self.token = token
        self.redis = aioredis.Redis.from_url(
            config.redis_url, decode_responses=True, socket_timeout=3, socket_connect_timeout=3
        )
        self._load = load
        self.capacity = capacity
        self._tasks: list[asyncio.Task] = []
        self._closing = False  # the loops end on it too: a cancel inside Redis can be lost
        self._nodes: list[NodeInfo] = []
        self._nodes_at = 0.0
        self._placed: dict[str, int] = {}  # viewers sent elsewhere since the last refresh
        self._pulls: dict[str, asyncio.Future] = {}
        self.edge_pipes: dict[str, set[tuple[str, tuple]]] = {}  # node -> {(sid, addr)}
        self.on_control: list[Callable[[dict], None]] = []
        self.redis_ok = True
        self.http: aiohttp.ClientSession | None = None
        self.sessions: dict[str, SessionMedia] = {}  # this node's live sessions
        self._feed_counts: dict[str, int] = {}

    @property
    def instance_name(self) -> str:
        return f"{self.id}/{self.instance}"

    async def start(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise ClusterError(f"cannot reach Redis at {self.config.redis_url}: {exc}") from None
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self._register()
        self._tasks.append(asyncio.ensure_future(self._heartbeat_loop()))
        self._tasks.append(asyncio.ensure_future(self._control_loop()))

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # bounded: a cancellation lost inside a Redis call must not hold the stop for ever
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            if pending:
                log.warning("%d cluster tasks did not end when stopped; left", len(pending))
        try:
            await self.redis.delete(f"lr:node:{self.id}")
        except (RedisError, OSError):
            pass
        await self.redis.aclose()
        if self.http is not None:
            await self.http.close()

    # -- registry --------------------------------------------------------------------------
    async def _register(self) -> None:
        key = f"lr:node:{self.id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "url": self.url,
                    "pipe_host": self.config.pipe_address,
                    "instance": self.instance,
                    "load": self._load(),
                    "capacity": self.capacity,
                    "home": int(self.config.cluster_home),
                },
            )
            pipe.pexpire(key, int(self.config.node_ttl_s * 1000))
            pipe.sadd(NODES, self.id)
            await pipe.execute()

    async def _heartbeat_loop(self) -> None:
        missing_since: dict[str, float] = {}
        known: set[str] = set()
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.config.node_ttl_s / 3)
            try:
                await self._register()
                nodes = await self.nodes(fresh=True)
                if not self.redis_ok:
                    log.warning("Redis reachable again; node %s re-registered", self.id)
                    missing_since.clear()  # every entry lapsed during the outage
                self.redis_ok = True
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    log.warning("Redis unreachable (%s); media goes on, placement is local", exc)
                self.redis_ok = False
                continue
            now = loop.time()
            alive = {n.id for n in nodes}
            known |= alive
            for node_id in list(known - alive):
                # lost once missing for twice the TTL as we saw it (not during an outage)
                if now - missing_since.setdefault(node_id, now) >= 2 * self.config.node_ttl_s:
                    known.discard(node_id)
                    missing_since.pop(node_id, None)
                    self._node_lost(node_id)
            for node_id in alive:
                missing_since.pop(node_id, None)
            await self._check_feeds()

    async def _check_feeds(self) -> None:
        """An edge whose feed went silent (its origin dropped it, or the origin moved while
        a control message was missed) pulls again from the origin Redis names."""
        for sid, media in list(self.sessions.items()):
            pipe = media.pipe_in
            if pipe is None or not media.viewers:
                continue
            seen = self._feed_counts.get(sid)
            self._feed_counts[sid] = pipe.packets
            if seen is None or pipe.packets != seen:
                continue
            try:
                origin = (await self.session_meta(sid)).get("origin")
            except (RedisError, OSError):
                return
            if origin and origin != self.id:
                self._forget_pulls(sid)
                try:
                    await self.ensure_pull(media, origin)
                except Refused as exc:
                    log.warning("session %s: feed silent, pull again failed: %s", sid, exc)

    def _node_lost(self, node_id: str) -> None:
        """Stop feeding a node that left the registry."""
        log.warning("node %s left the registry", node_id)
        for sid, addr in self.edge_pipes.pop(node_id, set()):
            media = self.sessions.get(sid)
            if media is not None:
                media.remove_pipe(addr)

    @property
    def known_nodes(self) -> list[NodeInfo]:
        return self._nodes

    async def nodes(self, fresh: bool = False) -> list[NodeInfo]:
        """Live nodes (registry entries that have not lapsed), cached for a moment."""
        now = time.monotonic()
        if not fresh and now - self._nodes_at < 0.5:
            return self._nodes
        ids = await self.redis.smembers(NODES)
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(f"lr:node:{node_id}")
            entries = await pipe.execute()
        nodes = []
        for node_id, h in zip(ids, entries, strict=True):
            if h and "url" in h:
                nodes.append(
                    NodeInfo(
                        node_id,
                        h["url"],
                        h.get("pipe_host", ""),
                        h.get("instance", ""),
                        int(h.get("load", 0)),
                        int(h.get("capacity", 1)),
                        h.get("home") == "1",
                    )
                )
        self._nodes, self._nodes_at, self._placed = nodes, now, {}
        return nodes

    # -- sessions --------------------------------------------------------------------------
    async def session_meta(self, sid: str) -> dict:
        return await self.redis.hgetall(session_key(sid))

    async def publish_session(self, sid: str, video_codec: str, status: str) -> None:
        try:
            await self.redis.hset(
                session_key(sid), mapping={"video_codec": video_codec, "status": status}
            )
        except (RedisError, OSError) as exc:
            log.warning("could not publish session %s to Redis: %s", sid, exc)

    async def became_origin(self, sid: str, video_codec: str) -> None:
        """The lecture's publisher is here now: edges pull from us."""
        self._forget_pulls(sid)
        try:
            await self.redis.hset(
                session_key(sid),
                mapping={"video_codec": video_codec, "origin": self.id, "status": "live"},
            )
            await self.redis.publish(
                CONTROL, json.dumps({"type": "origin", "session": sid, "node": self.id})
            )
        except (RedisError, OSError) as exc:
            log.warning("could not announce the origin of %s: %s", sid, exc)

    async def ended(self, sid: str) -> None:
        try:
            await self.redis.hset(session_key(sid), "status", "ended")
            await self.redis.publish(CONTROL, json.dumps({"type": "end", "session": sid}))
        except (RedisError, OSError) as exc:
            log.warning("could not announce the end of %s: %s", sid, exc)

    async def _control_loop(self) -> None:
        while not self._closing:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(CONTROL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        body = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    for callback in self.on_control:
                        try:
                            callback(body)
                        except Exception:  # noqa: BLE001 - one bad handler never stops the loop
                            log.exception("control message %s failed", body)
            except (RedisError, OSError):
                await asyncio.sleep(1.0)

    # -- placement (server/lectures/placement.py's interface) ------------------------------
    async def where(self, sid: str, asked: str | None) -> tuple[str, str] | None:
        if asked == self.id:  # redirected here already
            return None
        target = await self.choose(sid, await self._meta(sid))
        return None if target is None else (target.id, target.url)

    async def feed(self, media: SessionMedia) -> None:
        if media.publisher is not None:
            return  # the lecture is published here
        origin = (await self._meta(media.session_id)).get("origin")
        if origin and origin != self.id:
            await self.ensure_pull(media, origin)

    async def lookup(self, sid: str) -> dict:
        return await self.session_meta(sid)

    async def opened(self, sid: str, video_codec: str, status: str) -> None:
        await self.publish_session(sid, video_codec, status)

    async def went_live(self, sid: str, video_codec: str) -> None:
        await self.became_origin(sid, video_codec)

    async def _meta(self, sid: str) -> dict:
        try:
            return await self.session_meta(sid)
        except (RedisError, OSError):
            return {}  # Redis down: serve here what this node can

    async def choose(self, sid: str, meta: dict) -> NodeInfo | None:
        """Where a new viewer of ``sid`` goes: None for here."""
        try:
            nodes = await self.nodes()
        except (RedisError, OSError):
            return None  # Redis down: serve what we can here
        if not meta.get("origin"):
            # Nothing to pull yet: viewers wait on the home node, where the lecture begins.
            if self.config.cluster_home:
                return None
            home = next((n for n in nodes if n.home), None)
            if home is None:
                raise Unavailable("no home node is running")
            return home

        def share(n: NodeInfo) -> tuple[float, bool]:
            load = self._load() if n.id == self.id else n.load + self._placed.get(n.id, 0)
            return load / max(n.capacity, 1), n.id != self.id

        best = min(nodes, key=share, default=None)
        if best is None or best.id == self.id:
            return None
        self._placed[best.id] = self._placed.get(best.id, 0) + 1
        return best

    # -- pulling from the origin -----------------------------------------------------------
    async def ensure_pull(self, media: SessionMedia, origin_id: str) -> None:
        """Feed this node's copy of the session from the origin node (once per origin)."""
        key = f"{media.session_id} {origin_id}"
        ready = self._pulls.get(key)
        if ready is not None and ready.done() and media.pipe_in is None:
            ready = None  # the feed was closed since (a publisher came here meanwhile)
        if ready is None:
            self._forget_pulls(media.session_id)
            ready = self._pulls[key] = asyncio.ensure_future(self._pull(media, origin_id))
        try:
            await asyncio.shield(ready)
        except Exception:
            self._pulls.pop(key, None)
            raise

    def _forget_pulls(self, sid: str) -> None:
        for key in [k for k in self._pulls if k.split(" ", 1)[0] == sid]:
            del self._pulls[key]

    async def _pull(self, media: SessionMedia, origin_id: str) -> None:
        origin = next((n for n in await self.nodes() if n.id == origin_id), None)
        if origin is None:
            raise Unavailable(f"the lecture's origin node {origin_id} is not running")
        port = await media.open_feed(self.config.pipe_address)
        body = {
            "session": media.session_id,
            "node": self.id,
            "dest": [self.config.pipe_address, port],
        }
        try:
            async with self.http.post(
                f"{origin.url}/internal/cluster/feed",
                json=body,
                headers={INTERNAL_HEADER: self.token},
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise Unreachable(f"origin {origin_id} refused: {data.get('error')}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"origin {origin_id} unreachable: {exc}") from None
        media.set_feed_source(tuple(data["source"]))
        log.info("session %s: pulling from %s", media.session_id, origin_id)

    async def feed_edge(self, media: SessionMedia, node_id: str, dest: tuple[str, int]) -> list:
        """An edge asks us (the origin) for the session: add its pipe, tell it our address."""
        source = await media.pipe_source(self.config.pipe_address)
        media.add_pipe(dest)
        self.edge_pipes.setdefault(node_id, set()).add((media.session_id, dest))
        return list(source)
