"""Heartbeats from the pages, over HTTP or their WebSocket: each with the relay's own evidence
of the connection (its receiver reports), handed to the attendance tracker; and what the
relay pushes back on the socket (the layer it chose, the connection's end)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from media.session import MediaEvent
from server.attendance.ledger import now_ms
from server.attendance.tracker import HeartbeatTooSoon
from server.auth import Claims, authorize
from server.refusals import Refused
from server.routes.bodies import read_json
from server.routes.fields import bounded_int
from server.state import STATE, AppState
from server.web.bearer import require
from server.web.errors import HTTPProblem, status_of
from server.web.lean_socket import GOING_AWAY, NORMAL, POLICY_VIOLATION, LeanSocket, accept
from server.web.openapi import BOOL, INT, STR, documented, obj

VIEW_ROLES = ("viewer", "room", "member", "lecturer", "admin")
ANSWERING = ("member", "room")  # who answers a roll call: a known person, a classroom
WS_MAX_MESSAGE = 16 * 1024
MAX_PLAYED_MS = 3_600_000  # a heartbeat's played_ms: an hour is more than any span earns
PLAYED_RANGE = f"played_ms must be an integer from 0 to {MAX_PLAYED_MS}"


def _viewer(state: AppState, sid: str, rid: str):
    media = state.live.find(sid)
    viewer = media.viewers.get(rid) if media else None
    if viewer is None:
        raise HTTPProblem(404, "unknown resource")
    return media, viewer


def own_viewer(state: AppState, sid: str, rid: str, claims: Claims):
    """The viewer connection ``rid``, when it is the caller's own."""
    media, viewer = _viewer(state, sid, rid)
    ident = media.identities.get(rid)
    if ident is None or (ident.role, ident.subject) != (claims.role, claims.subject):
        raise HTTPProblem(403, "this connection belongs to someone else")
    return viewer


def media_reached(state: AppState, rid: str) -> None:
    """409 until the relay has seen media reach connection ``rid`` (its join): what a page
    says of it before then vouches for nothing."""
    if rid not in state.attendance.peers:
        raise HTTPProblem(409, "media has not reached this connection yet")


def _submit_heartbeat(state: AppState, rid: str, viewer, body) -> asyncio.Future:
    """One heartbeat from a page on its own connection ``viewer``, with the relay's own
    evidence, handed to the ledger; the future resolves once it is durable. Shared by the
    POST route and the WebSocket."""
    media_reached(state, rid)
    if not isinstance(body, dict):
        raise HTTPProblem(400, "a heartbeat must be a JSON object")
    frames = body.get("frames_decoded")
    flags = (body.get("audio_playing"), body.get("visible"))
    bounded_int(frames, 0, None, "frames_decoded must be a non-negative integer")
    if not all(isinstance(f, bool) for f in flags):
        raise HTTPProblem(400, "audio_playing and visible must be booleans")
    played = body.get("played_ms")  # absent (-1): the page did not say
    played = -1 if played is None else bounded_int(played, 0, MAX_PLAYED_MS, PLAYED_RANGE)
    rr = viewer.receiver_highest()
    try:
        return state.attendance.heartbeat(rid, frames, flags[0], flags[1], rr, played)
    except HeartbeatTooSoon as exc:
        raise HTTPProblem(429, str(exc)) from None


@documented(
    body=obj(
        ("frames_decoded", "audio_playing", "visible"),
        frames_decoded={"type": "integer", "minimum": 0},
        audio_playing=BOOL,
        visible=BOOL,
        played_ms={"type": "integer", "minimum": 0, "maximum": MAX_PLAYED_MS},
    ),
    errors=(409, 429),
    answer=obj(("seq", "layer"), seq=INT, layer=STR),
)
async def heartbeat(request: web.Request) -> web.Response:
    """``POST /whep/{session}/{resource}/heartbeat`` every 10-15 s from the page."""
    state: AppState = request.app[STATE]
    sid, rid = request.match_info["session"], request.match_info["resource"]
    claims = require(request, state.signer, VIEW_ROLES, sid)
    viewer = own_viewer(state, sid, rid, claims)  # 403/404 before reading the body
    body = await read_json(request)
    done = await _submit_heartbeat(state, rid, viewer, body)
    # The quality the relay chose for this connection, so that the page can say why the
    # picture went soft or away (a weak network), and that it comes back by itself.
    answer = {"seq": done.seq, "layer": viewer.quality().get("layer", "high")}
    return web.json_response(with_rollcall(state, sid, claims, answer))


def with_rollcall(state: AppState, sid: str, claims: Claims, answer: dict) -> dict:
    """A heartbeat's answer, with the open roll call when this member or room has yet to
    answer it (the page also hears it pushed when it opens: this is for one that missed
    that, or was not connected yet)."""
    if claims.role in ANSWERING:
        now = now_ms()
        call = state.rollcalls.current(sid, now)
        if call is not None and claims.participant not in call.answered:
            answer["rollcall"] = {"id": call.id, "closes_in_s": call.closes_in_s(now)}
    return answer


def push_rollcall(state: AppState, call) -> None:
    """A roll call opened: every member's and room's page of the lecture hears it now,
    ``{"rollcall": {"id", "closes_in_s"}}``."""
    media = state.live.find(call.session)
    if media is None:
        return
    message = json.dumps({"rollcall": {"id": call.id, "closes_in_s": call.window_s}}).encode()
    for rid, ident in list(media.identities.items()):
        if getattr(ident, "role", None) in ANSWERING:
            for sock in state.heartbeat_sockets.get(rid, ()):
                sock.send_text(message)


async def heartbeat_socket(request: web.Request) -> web.StreamResponse:
    """``GET /whep/{session}/{resource}/heartbeats`` (WebSocket): the same heartbeats as the
    POST route, one JSON text message each, each answered in order once it is durable
    (``{"seq", "layer"}`` or ``{"error", "status"}``). It spares each heartbeat an HTTP
    request (most of a heartbeat's cost in the relay; docs/DECISIONS.md). The token comes in
    the Authorization header or, from a browser (which cannot set one on a WebSocket), as the
    first message ``{"token": ...}``; a wrong token, or a connection that is gone, ends the
    socket after its error."""
    state: AppState = request.app[STATE]
    sid, rid = request.match_info["session"], request.match_info["resource"]
    claims: Claims | None = None
    if request.headers.get("Authorization"):
        claims = require(request, state.signer, VIEW_ROLES, sid)
        own_viewer(state, sid, rid, claims)
    else:
        _viewer(state, sid, rid)  # an unknown connection is a plain 404
    # No WebSocket pings: the page's own heartbeats come every few seconds, and the socket
    # lives as long as its viewer connection (closed with it, below), whose end a silent or
    # vanished page brings about (heartbeat timeout, ICE consent). A ping timer per socket,
    # reset on every message, was a measurable part of a heartbeat's cost.
    page = _HeartbeatPage(state, sid, rid, claims)
    sock = await accept(request, page.on_message, WS_MAX_MESSAGE)
    if claims is None:  # a socket that shows no token soon is closed: strangers hold none open
        asyncio.get_running_loop().call_later(
            state.config.socket_auth_timeout_s,
            lambda: page.claims is None and sock.close(POLICY_VIOLATION, "no token in time"),
        )
    sockets = state.heartbeat_sockets.setdefault(rid, set())
    sockets.add(sock)
    try:
        await sock.wait()
    finally:
        sockets.discard(sock)
        if not sockets and state.heartbeat_sockets.get(rid) is sockets:
            del state.heartbeat_sockets[rid]
        sock.close(GOING_AWAY, "the relay is stopping")  # only if still open
    return sock.response


def close_heartbeat_sockets(state: AppState, event: MediaEvent) -> None:
    """A media listener: a viewer connection that ended takes its pages' sockets with it."""
    if event.kind == "viewer_gone":
        for sock in state.heartbeat_sockets.pop(event.peer_id, ()):
            sock.close(GOING_AWAY, "ended")


def push_layer(state: AppState, event: MediaEvent) -> None:
    """A media listener: the relay moved a viewer to another layer (a weak network, or its
    recovery); its pages hear it now, ``{"layer": ...}``, not at their next heartbeat's
    answer, up to 10 s later."""
    if event.kind == "layer":
        message = json.dumps({"layer": event.reason}).encode()
        for sock in state.heartbeat_sockets.get(event.peer_id, ()):
            sock.send_text(message)


def close_all_heartbeat_sockets(state: AppState) -> None:
    """The relay is stopping: every page's socket ends (1001), before aiohttp waits for the
    handlers still running, which an open socket's is until its page answers (or 2 s)."""
    for sockets in list(state.heartbeat_sockets.values()):
        for sock in list(sockets):
            sock.close(GOING_AWAY, "the relay is stopping")


class _HeartbeatPage:
    """One page's heartbeat socket: each message handled as it is parsed, with no task of
    its own. While a heartbeat waits to be durable the socket reads nothing more (a page
    cannot queue work faster than the ledger answers it), so answers keep their order."""

    def __init__(self, state: AppState, sid: str, rid: str, claims: Claims | None) -> None:
        self.state, self.sid, self.rid, self.claims = state, sid, rid, claims

    def on_message(self, sock: LeanSocket, text: bytes) -> None:
        state = self.state
        try:
            try:
                body = json.loads(text)
            except ValueError:
                raise HTTPProblem(400, "a message must be JSON") from None
            if self.claims is None:
                token = body.get("token") if isinstance(body, dict) else None
                if not isinstance(token, str):
                    raise HTTPProblem(401, 'the first message must be {"token": ...}')
                claims = authorize(state.signer.verify(token), VIEW_ROLES, self.sid)
                own_viewer(state, self.sid, self.rid, claims)
                self.claims = claims
                sock.send_text(b'{"ok": true}')
                return
            # looked up each time: the connection may have ended since the last one
            viewer = own_viewer(state, self.sid, self.rid, self.claims)
            durable = _submit_heartbeat(state, self.rid, viewer, body)
        except (HTTPProblem, Refused) as exc:
            status = exc.status if isinstance(exc, HTTPProblem) else status_of(exc)
            sock.send_text(json.dumps({"error": exc.reason, "status": status}).encode())
            if status in (401, 403, 404):
                sock.close(NORMAL, exc.reason)
            return
        sock.hold()
        durable.add_done_callback(lambda done: self._answer(sock, viewer, done))

    def _answer(self, sock: LeanSocket, viewer, done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None:
            sock.send_text(b'{"error": "the ledger could not record it", "status": 503}')
        else:
            self.state.metrics.socket_heartbeats += 1
            answer = {"seq": done.result().seq, "layer": viewer.quality().get("layer", "high")}
            answer = with_rollcall(self.state, self.sid, self.claims, answer)
            sock.send_text(json.dumps(answer).encode())
        sock.release()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whep/{session}/{resource}/heartbeat", heartbeat)
    app.router.add_get("/whep/{session}/{resource}/heartbeats", heartbeat_socket)
