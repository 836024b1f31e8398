"""The media of one live session: its two forwarders, its publisher and its viewers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiortc import RTCConfiguration

from media.codecs import (
    CodecMismatch,
    keyframe_detector,
    media_kinds,
    offered_video_codecs,
    parse_offer,
)
from media.forwarder import Forwarder
from media.keyframes import KeyframeRequester
from media.layers import LayerPolicy
from media.peers import Publisher, Viewer, _Peer
from media.pipe import PipeIn, PipeOut
from media.recorder import SessionRecorder
from media.remote import RemoteViewer

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
QUIET_TICKS = 3  # seconds without a packet before the lecture's media counts as stopped


@dataclass
class MediaEvent:
    """Something a listener (metrics, attendance, pages) may care about."""

    kind: str  # publisher_connected, publisher_gone, viewer_connected, viewer_gone, layer
    session_id: str
    peer_id: str
    identity: object = None
    reason: str = ""  # why a connection ended; for ``layer``, the layer now chosen


class SessionMedia:
    def __init__(
        self,
        session_id: str,
        video_codec: str,
        rtc_config: RTCConfiguration,
        keyframe_interval_s: float = 0.5,
        listener: Callable[[MediaEvent], None] | None = None,
        record_dir: Path | None = None,
        layer_policy: LayerPolicy | None = None,
    ) -> None:
        self.session_id = session_id
        self.video_codec = video_codec
        self.rtc_config = rtc_config
        self.keyframe_interval_s = keyframe_interval_s
        self.layer_policy = layer_policy or LayerPolicy()
        # Side publications: a room given the floor ("speaker:room:<code>"), a room's camera
        # for the lecturer's wall ("wall:<code>"). Each is a small session of its own.
        self.feeds: dict[str, SessionMedia] = {}
        self.audio = Forwarder("audio", 48000)
        self.video = Forwarder(
            "video",
            90000,
            keyframe_detector(f"video/{video_codec}"),
            KeyframeRequester(lambda: None, keyframe_interval_s),
        )
        self.publisher: Publisher | None = None
        self.viewers: dict[str, Viewer | RemoteViewer] = {}
        # Other processes this session feeds (origin side), or the feed it gets (fed side).
        self.pipe_out: PipeOut | None = None
        self.pipe_in: PipeIn | None = None
        self.identities: dict[str, object] = {}
        # Who may end or change each connection (the route layer's; popped when it goes).
        self.owners: dict[str, object] = {}
        self.publishers_total = 0
        self._listener = listener or (lambda event: None)
        self._ticker: asyncio.Task | None = None
        # Set while the lecture's media arrives (from its publisher or over a pipe), as the
        # ticker saw it last: a viewer joins when media starts flowing to it, not when its
        # connection is up before the lecture has begun (or while the lecturer has paused).
        self.media_flowing = asyncio.Event()
        self._packets_seen = 0
        self._quiet_ticks = 0
        self.record_dir = record_dir
        self.recorder: SessionRecorder | None = None
        self.recordings: list[Path] = []

    # -- publishing ----------------------------------------------------------------------
    async def publish(self, offer_sdp: str) -> tuple[str, str]:
        """Answer a WHIP offer; a new publisher takes over from the previous one."""
        desc = parse_offer(offer_sdp)
        kinds = media_kinds(desc)
        if "video" in kinds:
            self._choose_codec(offered_video_codecs(desc))
        groups = [
            (g.items[1], g.items[0])
            for m in desc.media
            for g in m.ssrc_group
            if g.semantic == "FID" and len(g.items) == 2
        ]
        publisher = Publisher(
            self.rtc_config, self.audio, self.video, self.video_codec, self._peer_gone, kinds
        )
        answer = await publisher.answer(offer_sdp, groups)
        previous, self.publisher = self.publisher, publisher
        self.publishers_total += 1
        if self.pipe_in is not None:  # the lecture was fed from another node: now it is here
            self.pipe_in.close()
            self.pipe_in = None
        self._ensure_recorder()
        self.audio.new_publisher()
        self.video.new_publisher()
        if previous is not None:
            await previous.close("replaced")
        publisher.connected_hook = asyncio.ensure_future(self._announce(publisher))
        self._ensure_ticker()
        return publisher.id, answer

    def _ensure_recorder(self) -> None:
        """One recording per session while it runs here: a publisher that reconnects
        continues the same file (the forwarders keep one continuous stream)."""
        if self.record_dir is None or self.recorder is not None:
            return
        ext = "webm" if self.video_codec == "VP8" else "mkv"
        path = self.record_dir / f"{self.session_id}-{int(time.time())}.{ext}"
        self.recorder = SessionRecorder(path, self.audio, self.video, self.video_codec)
        self.recorder.start()
        self.recordings.append(path)

    def _choose_codec(self, offered: list[str]) -> None:
        if self.video_codec in offered:
            return
        if self.viewers:
            raise CodecMismatch(
                f"viewers are watching in {self.video_codec}; the publisher offers "
                f"{', '.join(offered) or 'no forwardable video codec'}"
            )
        if not offered:
            raise CodecMismatch("the offer has no video codec the relay forwards (VP8, H264)")
        self.video_codec = offered[0]
        self.video.is_keyframe = keyframe_detector(f"video/{self.video_codec}")

    async def _announce(self, peer: _Peer | RemoteViewer) -> None:
        await peer.connected.wait()
        if isinstance(peer, Publisher):
            self._listener(MediaEvent("publisher_connected", self.session_id, peer.id))
            return
        await self.media_flowing.wait()
        self._joined(peer.id)

    def _joined(self, peer_id: str) -> None:
        self._listener(
            MediaEvent("viewer_connected", self.session_id, peer_id, self.identities.get(peer_id))
        )

    # -- viewing -------------------------------------------------------------------------
    async def subscribe(
        self, offer_sdp: str, identity: object = None, audio_only: bool = False
    ) -> tuple[str, str]:
        kinds = self.check_viewer_offer(offer_sdp)
        viewer = Viewer(
            self.rtc_config,
            self.audio,
            self.video,
            self.video_codec,
            self._peer_gone,
            audio_only,
            kinds,
            self.layer_policy,
        )
        answer = await viewer.answer(offer_sdp)
        self.viewers[viewer.id] = viewer
        self.identities[viewer.id] = identity
        viewer.connected_hook = asyncio.ensure_future(self._announce(viewer))
        self._ensure_ticker()
        return viewer.id, answer

    def check_viewer_offer(self, offer_sdp: str) -> tuple[str, ...]:
        """The offer's media kinds; CodecMismatch when it can't take this lecture's video."""
        desc = parse_offer(offer_sdp)
        kinds = media_kinds(desc)
        if "video" in kinds:
            offered = offered_video_codecs(desc)
            if self.video_codec not in offered:
                raise CodecMismatch(
                    f"this lecture is sent in {self.video_codec}; the viewer offers "
                    f"{', '.join(offered) or 'no forwardable video codec'}"
                )
        return kinds

    def add_remote(self, viewer: RemoteViewer, identity: object) -> None:
        """A viewer another process serves; it joins when that process says media arrived."""
        self.viewers[viewer.id] = viewer
        self.identities[viewer.id] = identity

    def remote_gone(self, viewer: RemoteViewer) -> None:
        """A viewer another process served has ended: ``viewer_gone``, with its reason."""
        viewer.gone.set()
        self._peer_gone(viewer)

    def remote_connected(self, peer_id: str) -> None:
        viewer = self.viewers.get(peer_id)
        if isinstance(viewer, RemoteViewer) and not viewer.connected.is_set():
            viewer.connected.set()
            if self.media_flowing.is_set():
                self._joined(peer_id)
            else:
                viewer.connected_hook = asyncio.ensure_future(self._announce(viewer))

    # -- feeding other processes ---------------------------------------------------------
    async def pipe_source(self, host: str = "127.0.0.1") -> tuple[str, int]:
        """Where this session's pipe packets come from (fed processes accept only that)."""
        if self.pipe_out is None:
            self.pipe_out = PipeOut(self.audio, self.video)
        addr = await self.pipe_out.open(host)
        self._ensure_ticker()
        return addr

    def add_pipe(self, addr: tuple[str, int]) -> None:
        if self.pipe_out is not None:
            self.pipe_out.add(addr)

    def remove_pipe(self, addr: tuple[str, int]) -> None:
        if self.pipe_out is not None:
            self.pipe_out.remove(addr)

    async def feed_from(self, source: tuple[str, int], host: str = "127.0.0.1") -> int:
        """This process serves viewers of a lecture held elsewhere; returns the pipe port."""
        port = await self.open_feed(host)
        self.set_feed_source(source)
        return port

    async def open_feed(self, host: str = "127.0.0.1") -> int:
        """Bind the pipe socket that will receive this session (no source accepted yet)."""
        if self.pipe_in is None:
            self.pipe_in = PipeIn(self.audio, self.video)
            await self.pipe_in.open(host)
            self._ensure_ticker()
        return self.pipe_in.port

    def set_feed_source(self, source: tuple[str, int]) -> None:
        """Accept the pipe from ``source``; a new source (the lecture moved to another node)
        continues the same stream for our viewers, like a publisher that reconnected."""
        source = (source[0], int(source[1]))
        if self.pipe_in is not None and self.pipe_in.source != source:
            self.pipe_in.source = source
            self.audio.new_publisher()
            self.video.new_publisher()

    def _peer_gone(self, peer: _Peer | RemoteViewer) -> None:
        hook = getattr(peer, "connected_hook", None)
        if hook is not None:
            hook.cancel()
        self.owners.pop(peer.id, None)
        if isinstance(peer, (Viewer, RemoteViewer)):
            peer.detach()
            if self.viewers.pop(peer.id, None) is not None:
                identity = self.identities.pop(peer.id, None)
                self._listener(
                    MediaEvent("viewer_gone", self.session_id, peer.id, identity, peer.close_reason)
                )
        elif peer is self.publisher:
            self.publisher = None
            self._listener(
                MediaEvent("publisher_gone", self.session_id, peer.id, None, peer.close_reason)
            )

    # -- side feeds ------------------------------------------------------------------------
    def feed(self, name: str, create: bool = False) -> SessionMedia | None:
        media = self.feeds.get(name)
        if media is None and create:
            media = SessionMedia(
                f"{self.session_id}/{name}",
                self.video_codec,
                self.rtc_config,
                self.keyframe_interval_s,
                lambda event: log.info("feed %s: %s", event.session_id, event.kind),
            )
            self.feeds[name] = media
        return media

    def tell(self, event: MediaEvent) -> None:
        """Hand ``event`` to this session's listener: what a media worker's viewer did, as
        the pool hears of it."""
        self._listener(event)

    def low_layer(self):
        """The lecturer's low-bitrate copy's video forwarder, when it is live and compatible."""
        low = self.feeds.get("low")
        if low is None or not low.live or low.video_codec != self.video_codec:
            return None
        return low.video

    def holder_of(self, peer_id: str) -> SessionMedia | None:
        """This session or the side feed a connection belongs to; None when unknown."""
        name = self.feed_of(peer_id)
        if name is not None:
            return self.feeds[name]
        if peer_id in self.viewers or (self.publisher and self.publisher.id == peer_id):
            return self
        return None

    def feed_of(self, peer_id: str) -> str | None:
        """The side feed a connection belongs to (its publisher or one of its viewers)."""
        for name, feed in self.feeds.items():
            if peer_id in feed.viewers or (feed.publisher and feed.publisher.id == peer_id):
                return name
        return None

    async def close_feed(self, name: str, reason: str) -> bool:
        media = self.feeds.pop(name, None)
        if media is not None:
            await media.close(reason)
        return media is not None

    async def stop_peer(self, peer_id: str, reason: str = "delete") -> bool:
        for feed in self.feeds.values():
            if await feed.stop_peer(peer_id, reason):
                return True
        peer = self.viewers.get(peer_id)
        if peer is None and self.publisher is not None and self.publisher.id == peer_id:
            peer = self.publisher
        if peer is None:
            return False
        await peer.close(reason)
        return True

    # -- housekeeping --------------------------------------------------------------------
    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            seen = self.audio.packets_in + self.video.packets_in
            if seen != self._packets_seen:
                self._packets_seen = seen
                self._quiet_ticks = 0
                self.media_flowing.set()
            else:  # stopped: not a second's gap (a still screen shared without a microphone)
                self._quiet_ticks += 1
                if self._quiet_ticks >= QUIET_TICKS:
                    self.media_flowing.clear()
            self.video.keyframes.tick()
            low = self.low_layer()
            now = asyncio.get_running_loop().time()
            for viewer in list(self.viewers.values()):
                viewer.send_reports()
                changed = viewer.choose_layer(now, low) if isinstance(viewer, Viewer) else None
                if changed:  # the page is told at once (its heartbeat socket), not at its next beat
                    self._listener(MediaEvent("layer", self.session_id, viewer.id, None, changed))
            if self.pipe_out is not None:
                self.pipe_out.send_reports()

    async def close(self, reason: str = "session_end") -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.recorder is not None:
            self.recorder.close()
        for pipe in (self.pipe_out, self.pipe_in):
            if pipe is not None:
                pipe.close()
        for name in list(self.feeds):
            await self.close_feed(name, reason)
        peers: list = list(self.viewers.values())
        if self.publisher is not None:
            peers.append(self.publisher)
        await asyncio.gather(*(p.close(reason) for p in peers), return_exceptions=True)

    @property
    def live(self) -> bool:
        return self.publisher is not None and self.publisher.connected.is_set()
