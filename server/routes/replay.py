"""Replays: the job's state, the MP4 and its poster (range requests: Safari needs 206)."""

from __future__ import annotations

import datetime

from aiohttp import web

from server.auth import require
from server.errors import HTTPProblem
from server.replay import replay_paths
from server.routes.api import known_session
from server.state import STATE, AppState

ANY_ROLE = ("viewer", "room", "member", "lecturer", "admin")
REPLAY_LINK_TTL_S = 7 * 24 * 3600  # at most: never past the token the member came with


async def replay_state(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ANY_ROLE, sid)
    known_session(state, sid)
    job = state.replays.state(sid)
    if job is None:
        return web.json_response({"session": sid, "state": "none"})
    return web.json_response(job.__dict__)


async def rebuild(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("admin",))
    known_session(state, sid)
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


def _replay_item(state: AppState, session, token: str | None) -> dict | None:
    job = state.replays.state(session.id)
    if job is None or job.state != "done":
        return None
    item = {
        "session_id": session.id,
        "title": session.title,
        "media_seconds": job.media_seconds,
    }
    if token:
        item["url"] = f"/replay?session={session.id}&token={token}"
    return item


async def course_replays(request: web.Request) -> web.Response:
    """The replays of a course's lectures (course library entry; admin and schools)."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ("admin", "school"))
    try:
        cid = int(request.match_info["id"])
    except ValueError:
        raise HTTPProblem(400, "course id is a number") from None
    if state.programme.course(cid) is None:
        raise HTTPProblem(404, "no such course")
    out = []
    for t in state.programme.trainings(state="approved"):
        session = state.store.get_session(t.session_id) if t.course_id == cid else None
        item = _replay_item(state, session, None) if session else None
        if item:
            out.append(item)
    return web.json_response(out)


async def my_replays(request: web.Request) -> web.Response:
    """A member's own page: their training hours, and the replays they may watch (lectures
    whose classrooms include their township), each with a link made for them."""
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, ("member",))
    member = state.store.member(claims.subject or "")
    if member is None:
        raise HTTPProblem(404, "you are not in the roster")
    replays = []
    for session in state.store.list_sessions():
        if member.township not in {r.name for r in session.rooms}:
            continue
        token = state.signer.issue_under(
            claims, "member", session.id, member.member_id, REPLAY_LINK_TTL_S
        )
        item = _replay_item(state, session, token)
        if item:
            replays.append(item)
    credits = state.programme.credits_of(member.member_id)
    year = datetime.date.today().year
    return web.json_response(
        {
            "member_id": member.member_id,
            "name": member.name,
            "township": member.township,
            "year": year,
            "hours": sum(c["hours"] for c in credits if c["year"] == year),  # this year's
            "credits": credits,
            "replays": replays,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/courses/{id}/replays", course_replays)
    app.router.add_get("/api/me", my_replays)
    app.router.add_get("/api/sessions/{session}/replay", replay_state)
    app.router.add_post("/api/sessions/{session}/replay", rebuild)
    app.router.add_get(r"/replays/{session}.{ext:mp4|jpg}", replay_file)
