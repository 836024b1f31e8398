"""A WHIP/WHEP client on aiortc: the tests' and benchmarks' lecturer and viewers.

It gathers only the host addresses the process was told about (see
``media.fastpath.restrict_host_addresses``) and uses no STUN server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from yarl import URL


class SignallingError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


async def _exchange(
    http: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection
) -> tuple[str, str]:
    """POST the offer (following a 307 to another node); returns the Location as given and
    the resource's absolute URL."""
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        url,
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as resp:
        body = await resp.text()
        if resp.status != 201:
            await pc.close()
            raise SignallingError(resp.status, body)
        location = resp.headers["Location"]
        resource_url = str(resp.url.join(URL(location)))
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return location, resource_url


def _prefer(pc: RTCPeerConnection, kind: str, codec: str) -> None:
    caps = [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.split("/")[1].lower() in (codec.lower(), "rtx")
    ]
    for t in pc.getTransceivers():
        if t.kind == kind:
            t.setCodecPreferences(caps)


@dataclass
class Publication:
    pc: RTCPeerConnection
    location: str
    base_url: str
    token: str

    async def stop(self, http: aiohttp.ClientSession | None = None) -> None:
        if http is not None:
            async with http.delete(
                self.resource_url, headers={"Authorization": f"Bearer {self.token}"}
            ):
                pass
        await self.pc.close()

    @property
    def resource_url(self) -> str:
        return str(URL(self.base_url).join(URL(self.location)))


async def publish(
    http: aiohttp.ClientSession,
    base_url: str,
    session: str,
    token: str,
    tracks: list[MediaStreamTrack],
    video_codec: str | None = None,
) -> Publication:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    if video_codec:
        _prefer(pc, "video", video_codec)
    location, _ = await _exchange(http, f"{base_url}/whip/{session}", token, pc)
    return Publication(pc, location, base_url, token)


@dataclass
class TrackStats:
    frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    width: int | None = None
    height: int | None = None
    sizes: set = field(default_factory=set)


class Viewing:
    """A receive-only viewer that decodes what it gets and counts it."""

    def __init__(self, pc: RTCPeerConnection, started: float) -> None:
        self.pc = pc
        self.started = started
        self.location = ""  # as the relay wrote it (relative on one node)
        self.resource_url = ""  # absolute, on whichever node answered
        self.base_url = ""
        self.token = ""
        self.stats = {"audio": TrackStats(), "video": TrackStats()}
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Condition()
        pc.on("track", self._on_track)

    @property
    def resource(self) -> str:
        """The connection's id at the relay: its resource, the Location's last segment."""
        return self.location.rsplit("/", 1)[1]

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        stats = self.stats[track.kind]
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                stats.frames += 1
                stats.last_at = now
                if stats.first_at is None:
                    stats.first_at = now
                if track.kind == "video":
                    stats.width, stats.height = frame.width, frame.height
                    stats.sizes.add((frame.width, frame.height))
                async with self._changed:
                    self._changed.notify_all()
        except (MediaStreamError, asyncio.CancelledError):
            pass

    async def wait_frames(self, kind: str, count: int, timeout: float = 10.0) -> TrackStats:
        """Wait until ``count`` frames of ``kind`` have been decoded in total."""
        stats = self.stats[kind]

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: stats.frames >= count)

        await asyncio.wait_for(reached(), timeout)
        return stats

    async def heartbeat(
        self,
        http: aiohttp.ClientSession,
        frames_decoded: int | None = None,
        audio_playing: bool | None = None,
        visible: bool = True,
    ) -> tuple[int, dict]:
        """What a page says every 10-15 s; by default the truth of what was decoded."""
        now = self.playback()
        if frames_decoded is None:
            frames_decoded = now["frames_decoded"]
        if audio_playing is None:
            audio_playing = now["audio_playing"]
        async with http.post(
            f"{self.resource_url}/heartbeat",
            json={
                "frames_decoded": frames_decoded,
                "audio_playing": audio_playing,
                "visible": visible,
            },
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            return resp.status, await resp.json()

    def playback(self) -> dict:
        """What a page would report now: frames decoded, and audio arriving."""
        audio = self.stats["audio"]
        return {
            "frames_decoded": self.stats["video"].frames,
            "audio_playing": audio.last_at is not None and time.monotonic() - audio.last_at < 2,
            "visible": True,
        }

    async def heartbeat_socket(
        self, http: aiohttp.ClientSession, token_in_header: bool = True
    ) -> aiohttp.ClientWebSocketResponse:
        """The page's WebSocket for heartbeats (``.../heartbeats``), authenticated; send each
        heartbeat with ``send_json`` and read its answer with ``receive_json``."""
        url = f"{self.resource_url}/heartbeats"
        if token_in_header:
            return await http.ws_connect(url, headers={"Authorization": f"Bearer {self.token}"})
        ws = await http.ws_connect(url)
        await ws.send_json({"token": self.token})
        answer = await ws.receive_json()
        if not answer.get("ok"):
            await ws.close()
            raise SignallingError(answer.get("status", 0), answer.get("error", ""))
        return ws

    async def stop(self, http: aiohttp.ClientSession | None = None) -> None:
        if http is not None and self.location:
            async with http.delete(
                self.resource_url, headers={"Authorization": f"Bearer {self.token}"}
            ):
                pass
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def watch(
    http: aiohttp.ClientSession,
    base_url: str,
    session: str,
    token: str,
    audio_only: bool = False,
    kinds: tuple[str, ...] = ("audio", "video"),
    video_codec: str | None = None,
    ice_servers: list[dict] | None = None,
) -> Viewing:
    """``ice_servers``: as ``GET /api/sessions/{s}`` gives them to a page (none by default)."""
    servers = [RTCIceServer(**s) for s in ice_servers or ()]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly")
    if video_codec and "video" in kinds:
        _prefer(pc, "video", video_codec)
    viewing = Viewing(pc, time.monotonic())
    url = f"{base_url}/whep/{session}" + ("?audio_only=1" if audio_only else "")
    viewing.location, viewing.resource_url = await _exchange(http, url, token, pc)
    viewing.base_url = base_url
    viewing.token = token
    return viewing
