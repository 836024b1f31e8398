"""A viewer served by another process: the primary's stand-in for it.

The primary keeps identity and attendance; the worker that holds the connection reports when
media reached it, its receiver reports and its quality, and when it ended. The stand-in sits
in ``SessionMedia.viewers`` beside local viewers so counts, quality and heartbeats read both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from media.logtag import log_tag

log = logging.getLogger(__name__)

WorkerCall = Callable[[str, str], Awaitable[None]]  # (resource, reason) -> stop it there
ModeCall = Callable[[str, bool], Awaitable[None]]  # (resource, audio_only) -> switch it there


class RemoteViewer:
    def __init__(
        self,
        peer_id: str,
        worker: int,
        audio_only: bool,
        on_gone: Callable[[RemoteViewer], None],
        stop_there: WorkerCall,
        mode_there: ModeCall,
    ) -> None:
        self.id = peer_id
        self.worker = worker
        self.audio_only = audio_only
        self.tracks: dict = {}  # nothing to send from here
        self.connected = asyncio.Event()
        self.gone = asyncio.Event()  # set once it has ended, here or on its worker
        self.closed = False
        self.close_reason = ""
        self.connected_hook = None
        self.rr: dict[str, int] = {}
        self.stats: dict = {"audio_only": audio_only}
        self._on_gone = on_gone
        self._stop_there = stop_there
        self._mode_there = mode_there

    def report(self, rr: dict[str, int], quality: dict) -> None:
        self.rr = rr
        self.stats = quality
        self.audio_only = quality.get("audio_only", self.audio_only)

    def quality(self) -> dict:
        return dict(self.stats)

    def receiver_highest(self) -> dict[str, int]:
        return dict(self.rr)

    async def choose_audio_only(self, audio_only: bool) -> None:
        """The viewer's own choice, carried out by the worker that holds the connection."""
        await self._mode_there(self.id, audio_only)
        self.audio_only = audio_only

    def detach(self) -> None: ...

    def send_reports(self) -> None: ...

    async def close(self, reason: str = "delete", tell_worker: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.gone.set()
        self.close_reason = reason
        self._on_gone(self)
        if tell_worker:
            try:
                await self._stop_there(self.id, reason)
            except Exception as exc:  # noqa: BLE001 - the worker may be gone already
                log.info("worker %s could not stop %s: %s", self.worker, log_tag(self.id), exc)
