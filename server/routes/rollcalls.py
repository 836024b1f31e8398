"""Roll calls (点名) over HTTP: the lecturer starts one, members' and rooms' pages answer it on
their own connection, everyone of the lecture reads the open one. The service:
server/lectures/rollcalls.py; whether an answer counts: the report."""

from __future__ import annotations

from aiohttp import web

from server.lectures.rollcalls import DEFAULT_WINDOW_S, WINDOWS_S, plan_summary
from server.refusals import Conflict
from server.routes.bodies import read_json
from server.routes.fields import bounded_int, by_whom, known_session, text_field
from server.routes.heartbeats import ANSWERING, VIEW_ROLES, media_reached, own_viewer
from server.state import STATE, AppState
from server.web.bearer import require
from server.web.openapi import ARR_OBJ, BOOL, INT, OBJ, STR, documented, obj

CHAIRS = ("lecturer", "admin")
CALL = obj(
    ("id", "window_s", "closes_in_s", "open", "answers"),
    id=STR,
    window_s=INT,
    closes_in_s=INT,
    open=BOOL,
    answers=INT,
    members=INT,
    rooms=INT,
)


@documented(
    body=obj(window_s={"type": "integer", "minimum": WINDOWS_S[0], "maximum": WINDOWS_S[1]}),
    ok=201,
    errors=(409,),
    answer=CALL,
)
async def start(request: web.Request) -> web.Response:
    """``POST /api/sessions/{id}/rollcalls`` (lecturer, admin): a roll call now, open for
    ``window_s`` (default 90). Only while the lecture is live, one at a time."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, CHAIRS, sid)
    session = known_session(state, sid)
    data = await read_json(request)
    if session.status != "live":
        raise Conflict("the lecture is not live: a roll call is held during it")
    window = data.get("window_s", DEFAULT_WINDOW_S)
    call = await state.rollcalls.start(sid, by_whom(claims), window)
    return web.json_response(call.as_json(), status=201)


@documented(answer=obj(("open",), open={**OBJ, "nullable": True}, held=ARR_OBJ, plan=OBJ))
async def listing(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/rollcalls``: the open call (``null`` when none). The lecturer
    and an admin also read the calls held and the plan (how many, never when); a member or a
    room reads whether it has answered the open one."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, VIEW_ROLES, sid)
    known_session(state, sid)
    call = state.rollcalls.current(sid)
    if claims.role in CHAIRS:
        held = [c.as_json() for c in state.rollcalls.held.get(sid, ())]
        return web.json_response(
            {
                "open": call.as_json() if call else None,
                "held": held,
                "plan": plan_summary(state.store, sid),
            }
        )
    mine = None
    if call is not None:
        shown = call.as_json()
        mine = {k: shown[k] for k in ("id", "window_s", "closes_in_s", "open")}
        mine["answered"] = claims.participant in call.answered
    return web.json_response({"open": mine})


@documented(
    body=obj(("resource",), resource=STR, count={"type": "integer", "minimum": 0}),
    errors=(409, 410),
    answer=obj(("call", "seq", "again"), call=STR, seq=INT, again=BOOL),
)
async def answer(request: web.Request) -> web.Response:
    """``POST /api/sessions/{id}/rollcalls/{call}/answers`` (member, room): 到, on the
    caller's own viewer connection ``resource``; a room gives its headcount (``count``).
    Answering again gives the first answer back. After the window: 410, nothing recorded."""
    state: AppState = request.app[STATE]
    sid, call_id = request.match_info["session"], request.match_info["call"]
    claims = require(request, state.signer, ANSWERING, sid)
    known_session(state, sid)
    data = await read_json(request)
    rid = text_field(data, "resource")
    own_viewer(state, sid, rid, claims)
    media_reached(state, rid)
    count = -1
    if claims.role == "room":
        count = bounded_int(
            data.get("count"), 0, 10000, "a room answers with count, its people now (0-10000)"
        )
    seq, again = await state.rollcalls.answer(sid, call_id, claims.participant, rid, count)
    return web.json_response({"call": call_id, "seq": seq, "again": again})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/{session}/rollcalls", start)
    app.router.add_get("/api/sessions/{session}/rollcalls", listing)
    app.router.add_post("/api/sessions/{session}/rollcalls/{call}/answers", answer)
