"""The primary's media workers (``serve --workers N``): start them, place viewers, watch them.

The primary is worker 0: it holds the HTTP port, the database, the ledger and every
publisher, and serves viewers too. Workers 1..N-1 are child processes (``lecture-relay
worker``) that each serve their own viewers; a session's lecture reaches a worker over one
RTP pipe on loopback the first time a viewer is placed there. A new viewer goes to the worker
with the fewest viewers. A worker that dies takes its viewers with it (their attendance
intervals close with ``worker_lost``; their pages re-join and land on a live worker) and is
started again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field

import aiohttp

from media.remote import RemoteViewer
from media.session import MediaEvent, SessionMedia
from server.interprocess import INTERNAL_HEADER
from server.web.errors import HTTPProblem

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0


@dataclass
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process | None = None
    url: str | None = None
    pid: int | None = None
    up: asyncio.Event = field(default_factory=asyncio.Event)
    fed: dict[str, asyncio.Future] = field(default_factory=dict)  # session -> pipe ready
    viewers: int = 0  # as the primary placed them (exact, no report lag)
    counters: dict = field(default_factory=dict)
    starts: int = 0
    pipe_addrs: set = field(default_factory=set)  # where the primary's pipes reach it


class WorkerPool:
    def __init__(self, count: int, token: str, worker_env: dict[str, str]) -> None:
        self.workers = {i: WorkerHandle(i) for i in range(1, count)}
        self.token = token
        self._env = worker_env
        self._primary_url = ""
        self._http: aiohttp.ClientSession | None = None
        self._watchers: list[asyncio.Task] = []
        self._closing = False
        self.sessions: dict[str, SessionMedia] = {}  # the primary's sessions, for reports
        self.pending = dict.fromkeys(range(count), 0)  # placed, not yet answered
        self.local_viewers = lambda: 0

    @property
    def size(self) -> int:
        return len(self.workers) + 1

    async def start(self, primary_url: str) -> None:
        """Start every worker and wait until each has registered (or fail clearly)."""
        self._primary_url = primary_url
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        for handle in self.workers.values():
            await self._spawn(handle)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(h.up.wait() for h in self.workers.values())), START_TIMEOUT_S
            )
        except TimeoutError:
            missing = [i for i, h in self.workers.items() if not h.up.is_set()]
            raise RuntimeError(f"media workers {missing} did not start") from None

    async def _spawn(self, handle: WorkerHandle) -> None:
        handle.up.clear()
        handle.url = None
        handle.starts += 1
        env = dict(os.environ, **self._env, LR_INTERNAL_TOKEN=self.token)
        handle.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "worker",
            "--index",
            str(handle.index),
            "--primary",
            self._primary_url,
            env=env,
        )
        self._watchers.append(asyncio.ensure_future(self._watch(handle, handle.process)))

    async def _watch(self, handle: WorkerHandle, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._closing or handle.process is not process:
            return
        log.error("media worker %d exited (%s); its viewers are lost", handle.index, code)
        await self._lost(handle)
        await asyncio.sleep(RESTART_DELAY_S)
        if not self._closing:
            await self._spawn(handle)

    async def _lost(self, handle: WorkerHandle) -> None:
        handle.up.clear()
        handle.url = None
        handle.viewers = 0
        handle.fed.clear()
        for media in list(self.sessions.values()):
            for viewer in list(media.viewers.values()):
                if isinstance(viewer, RemoteViewer) and viewer.worker == handle.index:
                    await viewer.close("worker_lost", tell_worker=False)
            for addr in handle.pipe_addrs:
                media.remove_pipe(addr)
        handle.pipe_addrs.clear()

    def registered(self, index: int, url: str, pid: int) -> None:
        handle = self.workers.get(index)
        if handle is None:
            raise HTTPProblem(404, f"no worker {index}")
        handle.url, handle.pid = url, pid
        handle.up.set()
        log.info("media worker %d up at %s (pid %d)", index, url, pid)

    # -- placement -------------------------------------------------------------------------
    def place(self) -> int:
        """The worker with the fewest viewers, counting those still being answered (a burst
        of joins would otherwise all see the same counts). Ties go to the children: this
        process (0) also carries HTTP, ingest, recording and the pipes."""
        best, load = 0, self.local_viewers() + self.pending[0]
        for handle in self.workers.values():
            count = handle.viewers + self.pending[handle.index]
            if handle.up.is_set() and count <= load:
                best, load = handle.index, count
        self.pending[best] += 1
        return best

    def placed(self, index: int) -> None:
        """The viewer placed on ``index`` was answered (or refused): no longer pending."""
        self.pending[index] = max(self.pending[index] - 1, 0)

    async def subscribe(
        self, index: int, media: SessionMedia, offer: str, audio_only: bool, identity: object
    ) -> tuple[str, str]:
        handle = self.workers[index]
        await self._ensure_feed(handle, media)
        body = {
            "session": media.session_id,
            "video_codec": media.video_codec,
            "offer": offer,
            "audio_only": audio_only,
        }
        answer = await self._call(handle, "POST", "/internal/viewers", body)
        rid = answer["resource"]
        handle.viewers += 1

        def gone(viewer: RemoteViewer) -> None:
            handle.viewers = max(handle.viewers - 1, 0)
            media.remote_gone(viewer)

        async def stop_there(resource: str, reason: str) -> None:
            if handle.up.is_set():
                path = f"/internal/viewers/{media.session_id}/{resource}?reason={reason}"
                await self._call(handle, "DELETE", path, None, missing_ok=True)

        async def mode_there(resource: str, audio_only: bool) -> None:
            path = f"/internal/viewers/{media.session_id}/{resource}/mode"
            await self._call(handle, "POST", path, {"audio_only": audio_only})

        viewer = RemoteViewer(rid, index, audio_only, gone, stop_there, mode_there)
        media.add_remote(viewer, identity)
        return rid, answer["answer"]

    async def _ensure_feed(self, handle: WorkerHandle, media: SessionMedia) -> None:
        sid = media.session_id
        ready = handle.fed.get(sid)
        if ready is None:
            ready = handle.fed[sid] = asyncio.ensure_future(self._feed(handle, media))
        try:
            await asyncio.shield(ready)
        except Exception:
            handle.fed.pop(sid, None)
            raise

    async def _feed(self, handle: WorkerHandle, media: SessionMedia) -> None:
        source = await media.pipe_source("127.0.0.1")
        body = {"session": media.session_id, "video_codec": media.video_codec, "source": source}
        answer = await self._call(handle, "POST", "/internal/feed", body)
        addr = ("127.0.0.1", int(answer["port"]))
        media.add_pipe(addr)
        handle.pipe_addrs.add(addr)

    async def close_session(self, session: str, reason: str) -> None:
        for handle in self.workers.values():
            if handle.fed.pop(session, None) is not None and handle.up.is_set():
                path = f"/internal/sessions/{session}/close"
                try:
                    await self._call(handle, "POST", path, {"reason": reason})
                except HTTPProblem:
                    pass

    # -- reports from workers --------------------------------------------------------------
    def report(self, body: dict) -> None:
        handle = self.workers.get(int(body.get("worker", -1)))
        if handle is None:
            raise HTTPProblem(404, "no such worker")
        handle.counters = body.get("counters", {})
        stats = body.get("viewers", {})
        for media in self.sessions.values():
            for rid, viewer in list(media.viewers.items()):
                if isinstance(viewer, RemoteViewer) and rid in stats:
                    viewer.report(stats[rid].get("rr", {}), stats[rid].get("quality", {}))
        for event in body.get("events", []):
            media = self.sessions.get(event.get("session"))
            if media is None:
                continue
            viewer = media.viewers.get(event.get("peer"))
            if not isinstance(viewer, RemoteViewer):
                continue
            if event["kind"] == "viewer_connected":
                media.remote_connected(viewer.id)
            elif event["kind"] == "viewer_gone":
                asyncio.ensure_future(viewer.close(event.get("reason") or "ice_failure", False))
            elif event["kind"] == "layer":  # its pages are told now (push_layer)
                media.tell(MediaEvent("layer", media.session_id, viewer.id, None, event["reason"]))

    # -- plumbing --------------------------------------------------------------------------
    async def _call(
        self, handle: WorkerHandle, method: str, path: str, body: dict | None, missing_ok=False
    ) -> dict:
        if not handle.up.is_set() or handle.url is None:
            raise HTTPProblem(503, f"media worker {handle.index} is not running")
        try:
            async with self._http.request(
                method, handle.url + path, json=body, headers={INTERNAL_HEADER: self.token}
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 404 and missing_ok:
                    return {}
                if resp.status >= 400:
                    raise HTTPProblem(resp.status, data.get("error", f"worker said {resp.status}"))
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise HTTPProblem(503, f"media worker {handle.index} unreachable: {exc}") from None

    async def close(self) -> None:
        self._closing = True
        for handle in self.workers.values():
            if handle.process is not None and handle.process.returncode is None:
                handle.process.terminate()
        for handle in self.workers.values():
            if handle.process is not None:
                try:
                    await asyncio.wait_for(handle.process.wait(), 10)
                except TimeoutError:
                    handle.process.kill()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
