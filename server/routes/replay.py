"""Replays: the job's state, the MP4 and its poster (range requests: Safari needs 206)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from server.lectures.replays import replay_paths
from server.routes.fields import known_session, sqlite_int
from server.state import STATE, AppState
from server.store import is_session_id
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, ID, NUM, STR, documented, obj

ANY_ROLE = ("viewer", "room", "member", "lecturer", "admin")
REPLAY_LINK_TTL_S = 7 * 24 * 3600  # at most: never past the token the member came with


@documented(answer=obj(("state",), state=STR))
async def replay_state(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ANY_ROLE, sid)
    known_session(state, sid)
    job = state.replays.state(sid)
    if job is None:
        return web.json_response({"session": sid, "state": "none"})
    return web.json_response(job.public())


@documented(ok=202, errors=(409,), answer=obj(("state",), state=STR))
async def rebuild(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("admin",))
    known_session(state, sid)
    return web.json_response(state.replays.schedule(sid).public(), status=202)


async def replay_file(request: web.Request) -> web.StreamResponse:
    """``/replays/{session}.mp4|.jpg?token=…``: the token must be of that session."""
    state: AppState = request.app[STATE]
    sid, ext = request.match_info["session"], request.match_info["ext"]
    require(request, state.signer, ANY_ROLE, sid)
    if not is_session_id(sid):  # %2F and ..%2F arrive decoded: never let them name a path
        raise HTTPProblem(404, "no such replay")
    known_session(state, sid)
    try:
        mp4, poster, _ = replay_paths(state.config.media_root, sid)
    except ValueError:
        raise HTTPProblem(404, "no such replay") from None
    path = mp4 if ext == "mp4" else poster
    if not path.is_file():
        raise HTTPProblem(404, "this replay is not ready")
    size = path.stat().st_size
    try:
        wanted = byte_range(request.headers.get(hdrs.RANGE), size)
    except Unsatisfiable:
        raise HTTPProblem(
            416, "range not satisfiable", {"Content-Range": f"bytes */{size}"}
        ) from None
    response = _RangedFile(path, wanted)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


class Unsatisfiable(ValueError):
    """A Range that no byte of the file satisfies (416)."""


SPEC = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range a ``Range`` header asks of a file of ``size`` bytes, as (first, last),
    inclusive; None for the whole file: no header, several ranges (no multipart answers
    here) or an invalid one such as ``bytes=5-2`` (RFC 9110 14.2: a server may ignore
    them). Unsatisfiable where no byte is asked for: ``bytes=-0``, a first byte past the
    end."""
    if header is None:
        return None
    found = SPEC.fullmatch(header.strip().replace(" ", ""))
    if found is None:
        return None
    first, last = found.groups()
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            raise Unsatisfiable(header)
        return start, min(end, size - 1)
    if not last:
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise Unsatisfiable(header)
    return max(size - suffix, 0), size - 1


class _RangedFile(web.FileResponse):
    """A FileResponse that serves the range ``byte_range`` chose (or the whole file)
    whatever the Range header said: aiohttp reads it again from the request and took
    ``bytes=-0`` for the whole file as a 206."""

    def __init__(self, path: Path, wanted: tuple[int, int] | None) -> None:
        super().__init__(path)
        self._wanted = wanted

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        headers = request.headers.copy()
        headers.popall(hdrs.RANGE, None)
        if self._wanted is not None:
            first, last = self._wanted
            headers[hdrs.RANGE] = f"bytes={first}-{last}"
        return await super().prepare(request.clone(headers=headers))


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


@documented(params={"id": ID}, answer=ARR_OBJ)
async def course_replays(request: web.Request) -> web.Response:
    """The replays of a course's lectures (course library entry; admin and schools)."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ("admin", "school"))
    cid = sqlite_int(request.match_info["id"], "course id")
    if state.programme.course(cid) is None:
        raise HTTPProblem(404, "no such course")
    out = []
    for t in state.programme.trainings(state="approved"):
        session = state.store.get_session(t.session_id) if t.course_id == cid else None
        item = _replay_item(state, session, None) if session else None
        if item:
            out.append(item)
    return web.json_response(out)


@documented(
    answer=obj(
        ("member_id", "hours", "credits", "replays"),
        member_id=STR,
        hours=NUM,
        credits=ARR_OBJ,
        replays=ARR_OBJ,
    )
)
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
        if member.township not in {r.township for r in session.rooms}:
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
