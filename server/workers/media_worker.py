"""A media worker: one of ``serve --workers N``'s child processes.

It serves viewers of lectures held by the primary, which feeds it each session's RTP over a
pipe on loopback. It has no database and sees no tokens: the primary checks the viewer, keeps
identity and attendance, and asks this process (``/internal/...``, on 127.0.0.1 with the
internal token) to answer the offer. This process tells the primary when media reached a
viewer, what its receiver reports say, and when it ended.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal

import aiohttp
from aiohttp import web

from media import native
from media.codecs import CodecMismatch
from media.peers import PeerRefused, Viewer
from media.session import MediaEvent, SessionMedia
from server.config import Config
from server.ice import gather_as_configured
from server.interprocess import INTERNAL_HEADER, check_internal, read_internal_json
from server.lectures.live import layer_policy, rtc_configuration
from server.web.errors import HTTPProblem, error_middleware

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
PRIMARY_LOST_S = 10.0
PR_SET_PDEATHSIG = 1
WORKER = web.AppKey("worker", object)


class MediaWorker:
    def __init__(self, index: int, config: Config, primary_url: str, token: str) -> None:
        self.index = index
        self.config = config
        self.primary_url = primary_url.rstrip("/")
        self.token = token
        self.layers = layer_policy(config)
        self.sessions: dict[str, SessionMedia] = {}
        self.events: list[dict] = []
        self.http: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()

    # -- sessions --------------------------------------------------------------------------
    def session(self, sid: str, video_codec: str) -> SessionMedia:
        media = self.sessions.get(sid)
        if media is None:
            media = SessionMedia(
                sid,
                video_codec,
                rtc_configuration(self.config),  # a TURN credential is minted per session
                self.config.keyframe_interval_s,
                self._on_event,
                layer_policy=self.layers,
            )
            self.sessions[sid] = media
        elif not media.viewers and media.video_codec != video_codec:
            media.video_codec = video_codec  # the lecturer changed codec before anyone watched
        return media

    def _on_event(self, event: MediaEvent) -> None:
        if event.kind in ("viewer_connected", "viewer_gone", "layer"):
            self.events.append(
                {
                    "kind": event.kind,
                    "session": event.session_id,
                    "peer": event.peer_id,
                    "reason": event.reason,
                }
            )
            self._wake.set()

    def load(self) -> int:
        return sum(len(m.viewers) for m in self.sessions.values())

    # -- reporting to the primary ----------------------------------------------------------
    def _snapshot(self) -> dict:
        viewers = {}
        for media in self.sessions.values():
            for rid, viewer in media.viewers.items():
                if isinstance(viewer, Viewer):
                    viewers[rid] = {"rr": viewer.receiver_highest(), "quality": viewer.quality()}
        forwarders = [f for m in self.sessions.values() for f in (m.audio, m.video)]
        counters = {
            attr: sum(getattr(f, attr) for f in forwarders)
            for attr in ("packets_in", "packets_out", "bytes_out", "send_errors", "retransmits")
        }
        events, self.events = self.events, []
        return {
            "worker": self.index,
            "pid": os.getpid(),
            "events": events,
            "viewers": viewers,
            "load": self.load(),
            "counters": counters,
        }

    async def report_loop(self) -> None:
        """Events at once, everything else each second; without the primary we stop."""
        lost_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), REPORT_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()
            body = self._snapshot()
            try:
                async with self.http.post(
                    f"{self.primary_url}/internal/report",
                    json=body,
                    headers={INTERNAL_HEADER: self.token},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientError(f"primary answered {resp.status}")
                lost_since = None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.events = body["events"] + self.events  # try them again
                lost_since = lost_since or loop.time()
                if loop.time() - lost_since > PRIMARY_LOST_S:
                    log.error("worker %d: primary unreachable (%s); stopping", self.index, exc)
                    self._stopped.set()

    async def close(self) -> None:
        for media in list(self.sessions.values()):
            await media.close("server_restart")
        self.sessions.clear()


# -- internal routes ----------------------------------------------------------------------
def _worker(request: web.Request) -> MediaWorker:
    worker: MediaWorker = request.app[WORKER]
    check_internal(request, worker.token)
    return worker


async def feed(request: web.Request) -> web.Response:
    """``{"session", "video_codec", "source": [host, port]}`` -> ``{"port"}``."""
    worker = _worker(request)
    body = await read_internal_json(request)
    media = worker.session(body["session"], body["video_codec"])
    port = await media.feed_from(tuple(body["source"]))
    return web.json_response({"port": port})


async def subscribe(request: web.Request) -> web.Response:
    """``{"session", "video_codec", "offer", "audio_only"}`` -> ``{"resource", "answer"}``."""
    worker = _worker(request)
    body = await read_internal_json(request)
    media = worker.session(body["session"], body["video_codec"])
    if media.pipe_in is None:
        raise HTTPProblem(409, "this worker has no feed for the session")
    try:
        rid, answer = await media.subscribe(body["offer"], audio_only=bool(body["audio_only"]))
    except CodecMismatch as exc:
        raise HTTPProblem(406, str(exc)) from None
    except (ValueError, PeerRefused) as exc:
        raise HTTPProblem(400, str(exc)) from None
    return web.json_response({"resource": rid, "answer": answer})


async def stop_viewer(request: web.Request) -> web.Response:
    worker = _worker(request)
    media = worker.sessions.get(request.match_info["session"])
    reason = request.query.get("reason", "delete")
    if media is None or not await media.stop_peer(request.match_info["resource"], reason):
        raise HTTPProblem(404, "unknown resource")
    return web.json_response({"stopped": True})


async def viewer_mode(request: web.Request) -> web.Response:
    worker = _worker(request)
    body = await read_internal_json(request)
    media = worker.sessions.get(request.match_info["session"])
    viewer = media.viewers.get(request.match_info["resource"]) if media else None
    if not isinstance(viewer, Viewer):
        raise HTTPProblem(404, "unknown resource")
    viewer.set_audio_only(bool(body["audio_only"]))
    return web.json_response({"audio_only": viewer.audio_only})


async def close_session(request: web.Request) -> web.Response:
    worker = _worker(request)
    body = await read_internal_json(request)
    media = worker.sessions.pop(request.match_info["session"], None)
    if media is not None:
        await media.close(body.get("reason", "session_end"))
    return web.json_response({"closed": media is not None})


async def status(request: web.Request) -> web.Response:
    worker = _worker(request)
    return web.json_response(
        {
            "worker": worker.index,
            "load": worker.load(),
            "sessions": {
                sid: {
                    "viewers": len(m.viewers),
                    "pipe_packets": m.pipe_in.packets if m.pipe_in else 0,
                    "pipe_refused": m.pipe_in.refused if m.pipe_in else 0,
                }
                for sid, m in worker.sessions.items()
            },
        }
    )


def build_app(worker: MediaWorker) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[WORKER] = worker
    app.router.add_post("/internal/feed", feed)
    app.router.add_post("/internal/viewers", subscribe)
    app.router.add_delete("/internal/viewers/{session}/{resource}", stop_viewer)
    app.router.add_post("/internal/viewers/{session}/{resource}/mode", viewer_mode)
    app.router.add_post("/internal/sessions/{session}/close", close_session)
    app.router.add_get("/internal/status", status)
    return app


def _die_with_parent() -> None:
    """Linux: the kernel sends us SIGTERM when the primary dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # the report loop stops us once the primary stays unreachable


async def run_worker(index: int, config: Config, primary_url: str, token: str) -> None:
    """Serve on 127.0.0.1 (a free port), register with the primary, run until told to stop."""
    _die_with_parent()
    gather_as_configured(config)
    native.use(config.fastpath)
    worker = MediaWorker(index, config, primary_url, token)
    runner = web.AppRunner(build_app(worker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker._stopped.set)
    async with aiohttp.ClientSession() as http:
        worker.http = http
        async with http.post(
            f"{worker.primary_url}/internal/workers",
            json={"worker": index, "url": f"http://127.0.0.1:{port}", "pid": os.getpid()},
            headers={INTERNAL_HEADER: token},
        ) as resp:
            if resp.status != 200:
                raise SystemExit(f"worker {index}: primary refused registration ({resp.status})")
        reporter = asyncio.ensure_future(worker.report_loop())
        await worker._stopped.wait()
        await worker.close()
        worker._wake.set()
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
    await runner.cleanup()
