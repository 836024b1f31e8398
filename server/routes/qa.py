"""Q&A over HTTP: ask (members and rooms: askers are known), read (anyone of the session),
moderate (lecturer, admin)."""

from __future__ import annotations

from aiohttp import web

from server.attendance.events import Moderation, Question
from server.lectures.questions import ACTIONS, MAX_TEXT
from server.routes.bodies import read_json
from server.routes.fields import known_session, sqlite_int, text_field
from server.state import STATE, AppState
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, ID, INT, STR, TEXT, documented, obj

ASKERS = ("member", "room")
READERS = ("member", "room", "viewer")
MODERATORS = ("lecturer", "admin")


def participant_of(state: AppState, claims) -> tuple[str, str]:
    """(participant id, display name) of an asker."""
    if claims.role == "member":
        member = state.store.member(claims.subject or "")
        return f"member:{claims.subject}", member.name if member else "党员"
    found = state.store.room_by_code(claims.subject or "")
    return f"room:{claims.subject}", f"{found[1].name}教室" if found else "教室"


@documented(
    body=obj(("text",), text={**TEXT, "maxLength": 500}),
    ok=201,
    errors=(413, 429),
    answer=obj(("id",), id=INT),
)
async def ask(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ASKERS, sid)
    known_session(state, sid)
    data = await read_json(request)
    text = text_field(data, "text")
    if not text:
        raise HTTPProblem(400, "text is required")
    if len(text) > MAX_TEXT:
        raise HTTPProblem(413, f"a question is at most {MAX_TEXT} characters")
    participant, name = participant_of(state, claims)
    state.limits.questions.take(f"{sid}/{participant}")  # each question is a ledger event
    qid = state.questions.ask(sid, participant, name, text)
    await state.attendance.append(sid, Question(qid, participant, text))
    return web.json_response({"id": qid}, status=201)


@documented(answer=ARR_OBJ)
async def questions(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, READERS + MODERATORS, sid)
    everything = claims.role in MODERATORS
    participant = participant_of(state, claims)[0] if claims.role in ASKERS else None
    return web.json_response(state.questions.list(sid, everything, participant))


@documented(
    params={"id": ID},
    body=obj(answer=TEXT),
    body_required=False,
    answer=obj(("id", "action"), id=INT, action=STR),
)
async def moderate(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, MODERATORS, sid)
    action = request.match_info["action"]
    qid = sqlite_int(request.match_info["id"], "question id")
    answer = ""
    if action == "answer":
        answer = text_field(await read_json(request), "answer")[:MAX_TEXT]
    if not state.questions.moderate(sid, qid, action, answer):
        raise HTTPProblem(404, "no such question in this session")
    await state.attendance.append(sid, Moderation(qid, action, claims.role, answer))
    return web.json_response({"id": qid, "action": action})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/{session}/questions", ask)
    app.router.add_get("/api/sessions/{session}/questions", questions)
    app.router.add_post(
        "/api/sessions/{session}/questions/{id}/{action:" + "|".join(ACTIONS) + "}", moderate
    )
