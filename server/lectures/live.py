"""Live sessions in this process: session id -> SessionMedia, created on first use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCIceServer

from media.layers import LayerPolicy
from media.logtag import log_tag
from media.peers import Viewer
from media.session import MediaEvent, SessionMedia
from server.cluster.node import Cluster
from server.config import Config
from server.ice import ice_servers_for
from server.lectures.placement import LocalPlacement, Placement
from server.refusals import Gone, NotFound, Refused
from server.store import Store
from server.workers.pool import WorkerPool

log = logging.getLogger(__name__)


def layer_policy(config: Config) -> LayerPolicy:
    """The viewers' quality-layer thresholds from the settings (media/layers)."""
    return LayerPolicy(down_loss=config.layer_down_loss, up_after_s=config.layer_up_after_s)


def rtc_configuration(config: Config) -> RTCConfiguration:
    """Only the ICE servers we are told about: aiortc's default names a public STUN server.
    With a TURN secret the relay's own credential is minted now (a session's peers use the
    configuration made when the session's media was)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in ice_servers_for(config, "relay")
        ]
    )


class LiveSessions:
    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store
        self._rtc = rtc_configuration(config)
        self.layer_policy = layer_policy(config)
        self.sessions: dict[str, SessionMedia] = {}
        self.listeners: list[Callable[[MediaEvent], None]] = []
        self.pool: WorkerPool | None = None
        self.cluster: Cluster | None = None  # its own control messages, when in one
        self.placement: Placement = LocalPlacement()  # chosen once, at start
        self._background: set[asyncio.Future] = set()

    def viewer_count(self) -> int:
        """Every viewer this node serves, its workers' included."""
        return sum(len(m.viewers) for m in self.sessions.values())

    def use_cluster(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.placement = cluster
        cluster.sessions = self.sessions
        cluster.on_control.append(self._on_control)

    def _later(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def use_pool(self, pool: WorkerPool) -> None:
        """Serve viewers on the pool's workers too (``serve --workers N``)."""
        self.pool = pool
        pool.sessions = self.sessions
        pool.local_viewers = lambda: sum(
            isinstance(v, Viewer) for m in self.sessions.values() for v in m.viewers.values()
        )

    def _rtc_now(self) -> RTCConfiguration:
        return rtc_configuration(self._config) if self._config.turn_secret else self._rtc

    def get(self, session_id: str) -> SessionMedia:
        media = self.sessions.get(session_id)
        if media is not None:
            return media
        session = self._store.get_session(session_id)
        if session is None:
            raise NotFound(f"unknown session {session_id}")
        if session.status == "ended":
            raise Gone("this session has ended")
        media = SessionMedia(
            session_id,
            session.video_codec,
            self._rtc_now(),
            self._config.keyframe_interval_s,
            self._on_event,
            self._config.media_root / "recordings" if self._store.records(session_id) else None,
            self.layer_policy,
        )
        self.sessions[session_id] = media
        self._later(self.placement.opened(session_id, media.video_codec, session.status))
        return media

    async def open(self, session_id: str) -> SessionMedia:
        """Like ``get``; in a cluster also a session this node's database does not hold but
        Redis knows (this node serves it as an edge, fed from its origin)."""
        try:
            return self.get(session_id)
        except NotFound:
            meta = await self.placement.lookup(session_id)  # one node: {}
        if not meta:
            raise NotFound(f"unknown session {session_id}")
        if meta.get("status") == "ended":
            raise Gone("this session has ended")
        media = self.sessions.get(session_id)
        if media is None:
            media = SessionMedia(
                session_id,
                meta.get("video_codec", "H264"),
                self._rtc_now(),
                self._config.keyframe_interval_s,
                self._on_event,
                layer_policy=self.layer_policy,
            )
            self.sessions[session_id] = media
        return media

    async def subscribe(
        self, media: SessionMedia, offer: str, identity: object, audio_only: bool
    ) -> tuple[str, str]:
        """Answer a WHEP offer here or on the least-loaded worker."""
        if self.pool is None:
            return await media.subscribe(offer, identity=identity, audio_only=audio_only)
        index = self.pool.place()
        try:
            if index == 0:
                return await media.subscribe(offer, identity=identity, audio_only=audio_only)
            media.check_viewer_offer(offer)
            return await self.pool.subscribe(index, media, offer, audio_only, identity)
        finally:
            self.pool.placed(index)

    def find(self, session_id: str) -> SessionMedia | None:
        return self.sessions.get(session_id)

    def receiver_highest(self, session_id: str, peer_id: str) -> dict[str, int] | None:
        """What a viewer's receiver reports acknowledged (attendance's relay evidence)."""
        media = self.sessions.get(session_id)
        viewer = media.viewers.get(peer_id) if media is not None else None
        return viewer.receiver_highest() if viewer is not None else None

    async def stop_peer(self, session_id: str, peer_id: str, reason: str) -> bool:
        media = self.sessions.get(session_id)
        return media is not None and await media.stop_peer(peer_id, reason)

    async def end(self, session_id: str) -> None:
        """Close every connection of a session for good (its record stays)."""
        media = self.sessions.pop(session_id, None)
        if media is not None:
            await media.close("session_end")
        if self.pool is not None:
            await self.pool.close_session(session_id, "session_end")
        self._store.set_status(session_id, "ended")
        await self.placement.ended(session_id)

    def _on_event(self, event: MediaEvent) -> None:
        log.info(
            "%s session=%s peer=%s reason=%s",
            event.kind,
            event.session_id,
            log_tag(event.peer_id),
            event.reason or "-",
        )
        for listener in self.listeners:
            listener(event)
        if event.kind == "publisher_connected":
            self._store.set_status(event.session_id, "live")
            media = self.sessions.get(event.session_id)
            if media is not None:
                self._store.set_video_codec(event.session_id, media.video_codec)
                self._later(self.placement.went_live(event.session_id, media.video_codec))

    def _on_control(self, message: dict) -> None:
        """Cluster control: the lecture moved to another node, or the session ended."""
        sid = message.get("session")
        media = self.sessions.get(sid) if isinstance(sid, str) else None
        if media is None:
            return
        if message.get("type") == "origin" and message.get("node") != self.cluster.id:
            if media.pipe_in is not None or media.publisher is None:
                self._later(self._repull(media, message["node"]))
        elif message.get("type") == "end":
            self.sessions.pop(sid, None)
            self._later(media.close("session_end"))

    async def _repull(self, media: SessionMedia, origin: str) -> None:
        if not media.viewers:
            return
        try:
            await self.cluster.ensure_pull(media, origin)
        except Refused as exc:
            log.warning("session %s: cannot pull from %s: %s", media.session_id, origin, exc)

    async def close(self) -> None:
        """Server shutdown: viewers leave with reason server_restart; sessions stay open."""
        for media in list(self.sessions.values()):
            await media.close("server_restart")
        self.sessions.clear()
