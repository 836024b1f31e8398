"""Replays: the job's state, the MP4 and its poster (range requests: Safari needs 206)."""

from __future__ import annotations

from aiohttp import web

from server.auth import require
from server.errors import HTTPProblem
from server.replay import replay_paths
from server.state import STATE, AppState

ANY_ROLE = ("viewer", "room", "member", "lecturer", "admin")


async def replay_state(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ANY_ROLE, sid)
    if state.store.get_session(sid) is None:
        raise HTTPProblem(404, f"unknown session {sid}")
    job = state.replays.state(sid)
    if job is None:
        return web.json_response({"session": sid, "state": "none"})
    return web.json_response(job.__dict__)


async def rebuild(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("admin",))
    if state.store.get_session(sid) is None:
        raise HTTPProblem(404, f"unknown session {sid}")
    return web.json_response(state.replays.schedule(sid).__dict__, status=202)


async def replay_file(request: web.Request) -> web.StreamResponse:
    """``/replays/{session}.mp4|.jpg?token=…``: the token must be of that session."""
    state: AppState = request.app[STATE]
    sid, ext = request.match_info["session"], request.match_info["ext"]
    require(request, state.signer, ANY_ROLE, sid)
    mp4, poster, _ = replay_paths(state.config.media_root, sid)
    path = mp4 if ext == "mp4" else poster
    if not path.exists():
        raise HTTPProblem(404, "this replay is not ready")
    response = web.FileResponse(path)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{session}/replay", replay_state)
    app.router.add_post("/api/sessions/{session}/replay", rebuild)
    app.router.add_get(r"/replays/{session}.{ext:mp4|jpg}", replay_file)
