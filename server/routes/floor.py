"""The floor: rooms (and, when allowed, members) raise a hand; the lecturer grants the floor and
ends the turn. The speaker then publishes by WHIP with ``?feed=speaker`` and everyone watches
it by WHEP with ``?feed=speaker:<who>``, beside the lecture, as a second connection."""

from __future__ import annotations

from aiohttp import web

from server.routes.bodies import read_json
from server.routes.fields import bounded_int, known_session, text_field
from server.routes.qa import participant_of
from server.state import STATE, AppState
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, BOOL, INT, STR, TEXT, documented, obj

RAISERS = ("room", "member")
READERS = ("room", "member", "viewer", "lecturer", "admin")
CHAIRS = ("lecturer", "admin")


def speaker_of(state: AppState, claims) -> tuple[str, str]:
    """(who, display name) of a room or member on the floor. Everyone of the session reads
    the floor and watches its speakers, so ``who`` is opaque: a room code is a secret like a
    token (it is one POST from a room's token), and a member id opens their record."""
    participant, name = participant_of(state, claims)
    kind = participant.split(":", 1)[0]
    return f"{kind}:{state.signer.opaque(participant)}", name


def speaker_feed(who: str) -> str:
    return f"speaker:{who}"


def _live_speakers(state: AppState, sid: str) -> set[str]:
    media = state.live.find(sid)
    if media is None:
        return set()
    return {
        name.split(":", 1)[1]
        for name, feed in media.feeds.items()
        if name.startswith("speaker:") and feed.live
    }


@documented(answer=obj(("hands",), hands=ARR_OBJ))
async def floor_state(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, READERS, sid)
    known_session(state, sid)
    body = state.floor.of(sid).as_json(_live_speakers(state, sid))
    if claims.role in RAISERS:
        me = speaker_of(state, claims)[0]
        body["me"] = me
        body["my_hand"] = next(
            (i + 1 for i, h in enumerate(state.floor.of(sid).hands) if h.who == me), None
        )
        body["i_have_the_floor"] = state.floor.may_speak(sid, me)
    return web.json_response(body)


@documented(ok=201, errors=(409,), answer=obj(("who", "place"), who=STR, place=INT))
async def raise_hand(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, RAISERS, sid)
    known_session(state, sid)
    if claims.role == "member" and not state.floor.of(sid).members_may_raise:
        raise HTTPProblem(403, "the lecturer has not opened hands to members")
    who, name = speaker_of(state, claims)
    place = state.floor.raise_hand(sid, who, name)
    return web.json_response({"who": who, "place": place}, status=201)


@documented(answer=obj(("who", "lowered"), who=STR, lowered=BOOL))
async def lower_hand(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, RAISERS, sid)
    who = speaker_of(state, claims)[0]
    if not state.floor.lower_hand(sid, who):
        raise HTTPProblem(404, "no raised hand")
    return web.json_response({"who": who, "lowered": True})


@documented(
    body=obj(("who",), who=TEXT), errors=(409,), answer=obj(("who", "name"), who=STR, name=STR)
)
async def grant(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, CHAIRS, sid)
    known_session(state, sid)
    who = text_field(await read_json(request), "who")
    hand = state.floor.grant(sid, who)
    return web.json_response({"who": hand.who, "name": hand.name})


@documented(answer=obj(("who", "ended"), who=STR, ended=BOOL))
async def end_turn(request: web.Request) -> web.Response:
    """The lecturer ends a turn, or the speaker gives the floor back."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, CHAIRS + RAISERS, sid)
    who = request.match_info["who"]
    if claims.role in RAISERS and speaker_of(state, claims)[0] != who:
        raise HTTPProblem(403, "only the lecturer ends another's turn")
    if not state.floor.end_turn(sid, who):
        raise HTTPProblem(404, f"{who} does not have the floor")
    media = state.live.find(sid)
    if media is not None:
        await media.close_feed(speaker_feed(who), "floor_ended")
    return web.json_response({"who": who, "ended": True})


@documented(
    body=obj(max_speakers={"type": "integer", "minimum": 1, "maximum": 4}, members_may_raise=BOOL)
)
async def settings(request: web.Request) -> web.Response:
    """``{"max_speakers": 1-4, "members_may_raise": bool}`` (lecturer, admin)."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, CHAIRS, sid)
    known_session(state, sid)
    data = await read_json(request)
    floor = state.floor.of(sid)
    if "max_speakers" in data:
        floor.max_speakers = bounded_int(
            data["max_speakers"], 1, 4, "max_speakers must be an integer from 1 to 4"
        )
    if "members_may_raise" in data:
        if not isinstance(data["members_may_raise"], bool):
            raise HTTPProblem(400, "members_may_raise must be a boolean")
        floor.members_may_raise = data["members_may_raise"]
    return web.json_response(floor.as_json(_live_speakers(state, sid)))


WALL_PAGE = 24  # tiles a page: a lecture may have 300 classrooms


@documented(
    query={"page": INT, "township": STR},
    answer=obj(("rooms", "page", "pages"), rooms=ARR_OBJ, page=INT, pages=INT),
)
async def wall(request: web.Request) -> web.Response:
    """The lecturer's wall of rooms, ``WALL_PAGE`` a page (``?page=0..``, ``?township=`` for
    one township's): each room's state, headcount, quality and whether its small camera
    feed is live (watch it with WHEP ``?feed=wall:<code>``)."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, CHAIRS, sid)
    session = known_session(state, sid)
    page = request.query.get("page", "0")
    if not (page.isascii() and page.isdigit() and len(page) <= 4):
        raise HTTPProblem(400, "page is a whole number from 0")
    page = int(page)
    township = request.query.get("township")
    chosen = [r for r in session.rooms if township in (None, "", r.township)]
    pages = max(1, -(-len(chosen) // WALL_PAGE))
    page = min(page, pages - 1)
    chosen = chosen[page * WALL_PAGE : (page + 1) * WALL_PAGE]
    media = state.live.find(sid)
    heads = state.store.latest_headcounts(sid)
    quality: dict[str, dict] = {}
    if media is not None:
        for rid, viewer in media.viewers.items():
            ident = media.identities.get(rid)
            if getattr(ident, "role", None) == "room":
                quality[ident.subject] = viewer.quality()
    rooms = []
    for room in chosen:
        feed = media.feed(f"wall:{room.code}") if media is not None else None
        q = quality.get(room.code)
        tracks = [t for t in (q.get("video"), q.get("audio")) if t] if q else []
        rooms.append(
            {
                "code": room.code,
                "name": room.name,
                "township": room.township,
                "connected": q is not None,
                "headcount": heads.get(room.code),
                "wall_live": bool(feed and feed.live),
                "loss": max((t["loss"] for t in tracks), default=None),
                "rtt_ms": max((t["rtt_ms"] or 0 for t in tracks), default=None),
            }
        )
    return web.json_response({"rooms": rooms, "page": page, "pages": pages})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{session}/wall", wall)
    app.router.add_get("/api/sessions/{session}/floor", floor_state)
    app.router.add_patch("/api/sessions/{session}/floor", settings)
    app.router.add_post("/api/sessions/{session}/floor", grant)
    app.router.add_delete("/api/sessions/{session}/floor/{who}", end_turn)
    app.router.add_post("/api/sessions/{session}/hands", raise_hand)
    app.router.add_delete("/api/sessions/{session}/hands", lower_hand)
