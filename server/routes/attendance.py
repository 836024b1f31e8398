"""Attendance over HTTP: room headcounts and check-ins, ending a session with its receipt,
a member's own record, exports, the audit page and verification (admin only), the credit
rule, replay progress. The pages' heartbeats: routes/heartbeats.py."""

from __future__ import annotations

import asyncio
import json
import math

import segno
from aiohttp import web

from server.attendance.events import Export, Replay
from server.attendance.exports import CONTENT_TYPES, audit_summary, export_row, render_chunks
from server.attendance.ledger import now_ms
from server.attendance.report import SessionReport
from server.attendance.report_cache import report_options
from server.attendance.report_cache import session_report as reports_of
from server.attendance.tracker import ReportTooSoon
from server.attendance.verify import Verdict, verify
from server.classrooms import checkins as classrooms
from server.lectures.ending import change_rule, end_lecture
from server.lectures.service import credit_rule, current_rule
from server.programme.hours import credit_member
from server.routes.bodies import read_json
from server.routes.fields import bounded_int, by_whom, known_session, text_field
from server.state import STATE, AppState
from server.store import Member, Session
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, BOOL, INT, NUM, OBJ, STR, TEXT, documented, obj


@documented(
    body=obj(("count",), count={"type": "integer", "minimum": 0, "maximum": 10000}),
    errors=(429,),
    answer=obj(("room", "count", "seq"), room=STR, count=INT, seq=INT),
)
async def headcount(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("room",), sid)
    session = known_session(state, sid)
    data = await read_json(request)
    count = bounded_int(data.get("count"), 0, 10000, "count must be an integer from 0 to 10000")
    room = str(claims.subject)
    state.limits.headcounts.take(f"{sid}/{room}")  # each is a ledger event
    seq = await classrooms.headcount(state.store, state.attendance, session, room, count)
    return web.json_response({"room": room, "count": count, "seq": seq})


@documented(
    body=obj(("member_id",), member_id=TEXT),
    answer=obj(("member_id", "name", "seq"), member_id=STR, name=STR, seq=INT),
)
async def checkin(request: web.Request) -> web.Response:
    """A room operator checks a member of its own township in: ``{"member_id": "..."}``."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("room",), sid)
    session = known_session(state, sid)
    data = await read_json(request)
    member_id = text_field(data, "member_id", False)
    room = str(claims.subject)
    member, seq = await classrooms.check_in(state.store, state.attendance, session, room, member_id)
    return web.json_response({"member_id": member_id, "name": member.name, "seq": seq})


@documented(answer=obj(("checkins",), checkins=ARR_OBJ))
async def room_checkins(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/checkins`` (room): the members it has checked in."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("room",), sid)
    session = known_session(state, sid)
    room = str(claims.subject)
    members = await classrooms.checked_in(state.reports, state.store, session, room)
    return web.json_response(
        {"checkins": [{"member_id": m.member_id, "name": m.name} for m in members]}
    )


@documented(
    query={"q": STR},
    answer=obj(("township", "members", "more"), township=STR, members=ARR_OBJ, more=BOOL),
)
async def roster_search(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/roster?q=...`` (room): find members of its township to check
    in, by part of a name or a member id's start. Names and member ids only (no phone, no
    category), and a room sees its own township alone."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("room",), sid)
    session = known_session(state, sid)
    text = request.query.get("q", "")
    township, found, more = classrooms.search_roster(
        state.store, session, str(claims.subject), text
    )
    return web.json_response(
        {
            "township": township,
            "members": [{"member_id": m.member_id, "name": m.name} for m in found],
            "more": more,
        }
    )


@documented(errors=(409,), answer=obj(("session_id", "status"), session_id=STR, status=STR))
async def end_session(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("lecturer", "admin"), sid)
    ended = await end_lecture(state, known_session(state, sid), claims.role)
    return web.json_response(
        {"session_id": sid, "status": "ended", "receipt": ended.receipt, "replay": ended.replay}
    )


async def session_report(
    state: AppState, session: Session, roster: list[Member] | None = None, **options
) -> SessionReport:
    return await reports_of(state.reports, state.store, session, roster, **options)


@documented(
    query={"format": {"type": "string", "enum": ["csv", "json", "xlsx"]}, "phones": STR},
    produces=tuple(CONTENT_TYPES.values()),
)
async def export(request: web.Request) -> web.StreamResponse:
    """``GET /api/sessions/{id}/attendance?format=csv|json`` (admin): itself a ledger event."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("admin",))
    fmt = request.query.get("format", "json")
    if fmt not in ("csv", "json", "xlsx"):
        raise HTTPProblem(400, "format is csv, json or xlsx")
    phones = request.query.get("phones") in ("1", "true")
    session = known_session(state, sid)  # 404 before recording an export of nothing
    # the file carries its own reading, signed
    await state.attendance.append_signed(sid, Export(by_whom(claims), fmt, phones))
    report = await session_report(state, session)
    receipt = state.attendance.final_receipt(sid)
    cps = state.attendance.ledger.checkpoints(sid)
    chunks = render_chunks(fmt, report, state.attendance.ledger, cps, receipt, phones)
    first = await asyncio.to_thread(next, chunks)  # a failure here is still a clean error
    resp = web.StreamResponse(
        headers={"Content-Disposition": f'attachment; filename="attendance-{sid}.{fmt}"'}
    )
    resp.content_type = CONTENT_TYPES[fmt]
    await resp.prepare(request)
    # Each piece is made on a worker thread: a long lecture's JSON is hundreds of megabytes,
    # never held whole, and the event loop goes on serving heartbeats meanwhile.
    chunk: bytes | None = first
    while chunk is not None:
        await resp.write(chunk)
        chunk = await asyncio.to_thread(next, chunks, None)
    await resp.write_eof()
    return resp


@documented(answer=OBJ)
async def verify_session(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("admin",))
    verdict = await asyncio.to_thread(_verify, state, sid)
    return web.json_response(verdict.as_json(), status=200)


def _verify(state: AppState, sid: str) -> Verdict:
    """The session's chain and signatures checked (on a worker thread: it hashes every
    event)."""
    attendance = state.attendance
    checkpoints = attendance.all_checkpoints(sid)
    return verify(sid, attendance.ledger.rows(sid), checkpoints, attendance.key.public)


@documented(
    answer=obj(("member_id", "credited", "lecture"), member_id=STR, credited=BOOL, lecture=OBJ)
)
async def my_record(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/me``: a member reads their own record, and nobody else's,
    with what credit is judged against (the watch page shows it during and after the
    lecture)."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("member",), sid)
    participant = f"member:{claims.subject}"
    # while live, judged as of now (an open connection's interval reaches it)
    report = await own_record(state, sid, participant, now_ms=now_ms())
    mine = report.participants.get(participant)
    if mine is None:
        row = {"member_id": claims.subject, "seconds_watched": 0, "credited": False}
        row |= {"replay_seconds": 0, "total_seconds": 0, "intervals": []}
    else:
        row = export_row(mine)
        row.pop("phone", None)
        row.pop("address", None)
    me = state.store.member(str(claims.subject))
    if me is not None:
        row["name"], row["place"] = me.name, me.township
    row["lecture"] = lecture_terms(report)
    return web.json_response(row)


async def own_record(state: AppState, sid: str, participant: str, **options) -> SessionReport:
    """The session's report with one member's record alone, on a worker thread. Every member
    may ask, during a lecture and after it: it is folded out without names (the whole roster
    is 30,000 rows, ~130 ms to read on the event loop); the caller reads the one it needs."""
    options |= report_options(state.store, known_session(state, sid), roster=[])
    return await asyncio.to_thread(state.reports.alone, sid, participant, **options)


def lecture_terms(report: SessionReport) -> dict:
    """What a member's credit is judged against: the lecture's length (so far, while it is
    live) and the share of it to watch."""
    length = report.length_s
    return {
        "started": report.start_ms is not None,
        "ended": report.end_ms is not None,
        "seconds": round(length),
        "threshold": report.threshold,
        "required_seconds": round(length * report.threshold),
        # roll calls held so far, and how many of them a member answers to be credited
        "rollcalls_held": len(report.rollcalls),
        "rollcalls_required": min(report.rollcalls_required, len(report.rollcalls)),
        "replay_credit": report.replay_credit,
    }


@documented(answer=obj(("title", "verify"), title=STR, verify=OBJ))
async def audit(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/audit`` (admin): what the audit page draws. It names absentees,
    so reading it is recorded like any export of personal data."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("admin",))
    session = known_session(state, sid)
    # signed at once: the page's own reading is not left for it to call unsigned
    await state.attendance.append_signed(sid, Export(by_whom(claims), "audit-page", False))
    # read once, off the event loop: the report's names and the absentees
    roster = await asyncio.to_thread(state.store.roster_apart)
    # while live, as of now: the header says so, and the length counts up
    report = await session_report(state, session, roster, now_ms=now_ms())
    body = await asyncio.to_thread(audit_summary, report, roster, session.rooms)
    body["title"] = session.title
    receipt = state.attendance.final_receipt(sid)
    body["receipt"] = receipt
    if receipt:
        text = json.dumps(receipt, sort_keys=True, separators=(",", ":"))
        body["receipt_qr_svg"] = segno.make(text, error="m").svg_inline(scale=3)
    body["verify"] = (await asyncio.to_thread(_verify, state, sid)).as_json()
    return web.json_response(body)


@documented(
    body=obj(("member_id", "name"), member_id=TEXT, name=TEXT),
    answer=obj(("token", "member_id", "name"), token=STR, member_id=STR, name=STR),
)
async def identify(request: web.Request) -> web.Response:
    """On the session's open link a member types id and name; checked against the roster,
    they get a member token for this session that says it was identified this way."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("viewer",), sid)
    data = await read_json(request)
    member_id = text_field(data, "member_id", False)
    name = text_field(data, "name", False)
    member = state.store.member(member_id) if member_id else None
    if member is None or member.name != name:
        raise HTTPProblem(404, "no member with this id and name in the roster")
    # no longer than the open link's own token: identifying renews nothing
    token = state.signer.issue_under(
        claims, "member", sid, member_id, state.config.token_ttl_s, via="open"
    )
    return web.json_response({"token": token, "member_id": member_id, "name": member.name})


RULE_FIELDS = {
    "credit_threshold", "replay_credit", "rollcalls_required", "replay_without_rollcalls"
}  # fmt: skip


@documented(
    body=obj(
        credit_threshold=NUM,
        replay_credit=BOOL,
        rollcalls_required={"type": "integer", "minimum": 0, "maximum": 20},
        replay_without_rollcalls=BOOL,
    ),
    answer=obj(
        ("session_id", "credit_threshold", "replay_credit", "changed"),
        session_id=STR,
        credit_threshold=NUM,
        replay_credit=BOOL,
        changed=BOOL,
    ),
)
async def change_credit_rule(request: web.Request) -> web.Response:
    """``PATCH /api/sessions/{id}/credit-rule`` (admin): the share of the lecture a member
    must watch, and whether replay counts; before, during or after the lecture. The change
    is a ledger event; after the lecture, its members' hours are worked out again."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("admin",))
    session = known_session(state, sid)
    data = await read_json(request)
    if not data.keys() & RULE_FIELDS:
        raise HTTPProblem(400, f"give any of {', '.join(sorted(RULE_FIELDS))}")
    before = current_rule(state.store, sid)
    rule = credit_rule(data, before)
    credited = await change_rule(state, session, rule, by_whom(claims))
    body = {"session_id": sid, "credit_threshold": rule.threshold}
    body |= {"replay_credit": rule.replay_credit, "changed": rule != before}
    body |= {"rollcalls_required": rule.rollcalls_required}
    body |= {"replay_without_rollcalls": rule.replay_without_rollcalls}
    if credited is not None:
        body["credited"] = credited
    return web.json_response(body)


REPLAY_END_SLACK_S = 1.0  # a page's playhead may read this far past the file's end


@documented(
    body=obj(
        ("position", "view", "playing", "visible"),
        position={"type": "number", "minimum": 0},
        view=STR,
        playing=BOOL,
        visible=BOOL,
    ),
    errors=(409, 429),
    answer=obj(("seq",), seq=INT),
)
async def replay_progress(request: web.Request) -> web.Response:
    """``POST /api/sessions/{id}/replay/progress`` every heartbeat interval (and on play and
    pause) from the replay page. One report per member every half interval at most (429,
    not recorded), whichever view or device sends it; a position is within the replay."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("member", "viewer"), sid)
    data = await read_json(request)
    position = data.get("position")
    view = data.get("view")
    view = view[:32] if isinstance(view, str) else ""
    flags = (data.get("playing"), data.get("visible"))
    if isinstance(position, bool) or not isinstance(position, int | float) or position < 0:
        raise HTTPProblem(400, "position must be a non-negative number of seconds")
    if not view or not all(isinstance(f, bool) for f in flags):
        raise HTTPProblem(400, "view is required; playing and visible must be booleans")
    replay = state.replays.state(sid)
    if replay is None:
        raise HTTPProblem(404, "this session has no replay")
    if replay.state != "done":
        raise HTTPProblem(409, "this session's replay is not ready yet")
    if position > replay.media_seconds + REPLAY_END_SLACK_S:
        raise HTTPProblem(
            400, f"position is past the end of the replay ({replay.media_seconds:.1f} s)"
        )
    position = min(position, replay.media_seconds)
    if claims.role == "member":
        who = reporter = f"member:{claims.subject}"
    else:  # the open link's viewers are nobody in particular: each page for itself
        who, reporter = "viewer:replay", f"viewer:{request.remote}:{view}"
    event = Replay(who, view, int(position * 1000), flags[0], flags[1])
    try:
        done = await state.attendance.replay_report(sid, reporter, event)
    except ReportTooSoon as exc:
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        raise HTTPProblem(429, str(exc), retry) from None
    member = claims.role == "member" and state.store.replay_credit(sid)
    if member and not state.programme.has_credit(sid, str(claims.subject)):
        # made up by replay: the member earns the lecture's hours as soon as they have
        # (where replay counts; a change of rule after the lecture works hours out again)
        mine = await own_record(state, sid, who)
        credit_member(state.programme, sid, mine, str(claims.subject))
    return web.json_response({"seq": done.seq})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/{session}/replay/progress", replay_progress)
    app.router.add_patch("/api/sessions/{session}/credit-rule", change_credit_rule)
    app.router.add_post("/api/sessions/{session}/identify", identify)
    app.router.add_get("/api/sessions/{session}/audit", audit)
    app.router.add_get("/api/sessions/{session}/me", my_record)
    app.router.add_post("/api/sessions/{session}/headcount", headcount)
    app.router.add_post("/api/sessions/{session}/checkin", checkin)
    app.router.add_get("/api/sessions/{session}/roster", roster_search)
    app.router.add_get("/api/sessions/{session}/checkins", room_checkins)
    app.router.add_post("/api/sessions/{session}/end", end_session)
    app.router.add_get("/api/sessions/{session}/attendance", export)
    app.router.add_get("/api/sessions/{session}/verify", verify_session)
