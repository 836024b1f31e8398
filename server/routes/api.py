"""The JSON API behind the pages."""

from __future__ import annotations

from aiohttp import web

from media import native
from server.classrooms.directory import MAX_ROOMS, choose
from server.ice import ice_servers_of
from server.lectures.links import session_links
from server.lectures.rollcalls import plan
from server.lectures.service import create_lecture, credit_rule
from server.retention import recording_bytes, usage
from server.routes.bodies import read_json
from server.routes.fields import by_whom, known_session, text_field
from server.state import STATE, AppState
from server.store import TOWNSHIPS
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, BOOL, INT, STR, TEXT, arr, documented, obj

ANY_ROLE = ("viewer", "room", "member", "lecturer", "admin")


@documented(answer=obj(("ok",), ok=BOOL))
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@documented(
    answer=obj(
        ("session_id", "title", "status", "role"),
        session_id=STR,
        title=STR,
        status=STR,
        live=BOOL,
        flowing=BOOL,
        role=STR,
        ice_servers=ARR_OBJ,
    )
)
async def session_info(request: web.Request) -> web.Response:
    """What a page needs to start: title, state, ICE servers. Any token of the session."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ANY_ROLE, sid)
    session = known_session(state, sid)
    media = state.live.find(sid)
    info = {
        "session_id": sid,
        "title": session.title,
        "status": session.status,
        "live": bool(media and media.live),
        # the lecture's media arriving now: a page whose picture stopped tells a pause by the
        # lecturer (wait) from its own weak link (join again)
        "flowing": bool(media and media.media_flowing.is_set()),
        "video_codec": media.video_codec if media else session.video_codec,
        "role": claims.role,
        "ice_servers": [s.as_json() for s in ice_servers_of(state.config, state.signer, claims)],
        "heartbeat_interval_s": state.config.heartbeat_interval_s,
    }
    if claims.role == "room":
        room = next((r for r in session.rooms if r.code == claims.subject), None)
        info["room"] = room.name if room else None
        info["township"] = room.township if room else None
    return web.json_response(info)


@documented(answer=obj(("live", "viewers", "rooms"), live=BOOL, viewers=INT, rooms=ARR_OBJ))
async def session_stats(request: web.Request) -> web.Response:
    """Live audience for the lecturer page: viewers, rooms connected, headcounts."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("lecturer", "admin"), sid)
    session = known_session(state, sid)
    media = state.live.find(sid)
    identities = list(media.identities.values()) if media else []
    rooms_live = {c.subject for c in identities if getattr(c, "role", None) == "room"}
    heads = state.store.latest_headcounts(sid)
    return web.json_response(
        {
            "live": bool(media and media.live),
            "viewers": len(media.viewers) if media else 0,
            "rooms_connected": len(rooms_live),
            "rooms": [
                {
                    "name": r.name,
                    "township": r.township,
                    "kind": r.kind,
                    "connected": r.code in rooms_live,
                    "headcount": heads.get(r.code),
                }
                for r in session.rooms
            ],
            "headcount_total": sum(heads.values()),
        }
    )


POOR_LOSS = 0.05
POOR_RTT_MS = 300


@documented(answer=ARR_OBJ)
async def session_quality(request: web.Request) -> web.Response:
    """Each viewer's connection quality (loss, jitter, round trip), worst first."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("lecturer", "admin"), sid)
    media = state.live.find(sid)
    rows = []
    for rid, viewer in media.viewers.items() if media else []:
        q = viewer.quality()
        ident = media.identities.get(rid)
        tracks = [t for t in (q.get("video"), q.get("audio")) if t]
        loss = max((t["loss"] for t in tracks), default=None)
        rtt = max((t["rtt_ms"] for t in tracks if t["rtt_ms"] is not None), default=None)
        rows.append(
            {
                "participant": getattr(ident, "participant", rid),
                "audio_only": q["audio_only"],
                "layer": q.get("layer", "high"),  # the quality the relay chose (media/layers)
                "loss": loss,
                "rtt_ms": rtt,
                "jitter_ms": max((t["jitter_ms"] for t in tracks), default=None),
                "poor": (loss or 0) > POOR_LOSS or (rtt or 0) > POOR_RTT_MS,
                "tracks": {k: q.get(k) for k in ("audio", "video")},
            }
        )
    rows.sort(key=lambda r: (not r["poor"], -(r["loss"] or 0), -(r["rtt_ms"] or 0)))
    return web.json_response(rows)


@documented(
    body=obj(("code",), code={"type": "string", "pattern": "^[0-9]{8}$"}),
    errors=(410, 429),
    answer=obj(("session_id", "room", "token"), session_id=STR, room=STR, token=STR),
)
async def room_join(request: web.Request) -> web.Response:
    """Exchange a township room's code for its token and page URL."""
    state: AppState = request.app[STATE]
    data = await read_json(request)
    code = text_field(data, "code")
    if not code.isdigit() or len(code) != 8:
        raise HTTPProblem(400, "room code is 8 digits")
    address = request.remote or ""
    state.limits.room_codes.check(address)  # before the lookup: a limited guesser learns nothing
    found = state.store.room_by_code(code)
    if found is None:
        # a code is a secret like a token: wrong guesses are limited per address
        state.limits.room_codes.take(address)
        raise HTTPProblem(404, "no room has this code")
    sid, room = found
    session = state.store.get_session(sid)
    if session is None or session.status == "ended":
        raise HTTPProblem(410, "this session has ended")
    token = state.signer.issue("room", sid, room.code, state.config.token_ttl_s)
    return web.json_response({"session_id": sid, "room": room.name, "token": token})


@documented(
    body=obj(
        ("title",),
        title=TEXT,
        video_codec={"type": "string", "enum": ["VP8", "H264"]},
        record=BOOL,
        credit_threshold={"type": "number", "minimum": 0.01, "maximum": 1},
        replay_credit=BOOL,
        classrooms={
            "oneOf": [
                {"type": "string", "enum": ["schools", "all"]},
                {"type": "array", "items": STR, "maxItems": MAX_ROOMS},
            ]
        },
        townships={"type": "array", "items": STR, "maxItems": 15},
        rollcalls_required={"type": "integer", "minimum": 0, "maximum": 20},
        replay_without_rollcalls=BOOL,
        rollcall_plan=obj(
            ("count", "from_minute", "to_minute"),
            count={"type": "integer", "minimum": 1, "maximum": 20},
            from_minute={"type": "integer", "minimum": 0},
            to_minute={"type": "integer", "maximum": 600},
        ),
    ),
    ok=201,
    answer=obj(("session_id",), session_id=STR),
)
async def create_session(request: web.Request) -> web.Response:
    """A lecture (admin). Its classrooms: ``townships`` (every classroom of each), else
    ``classrooms``: "schools" (the default), "all", or a list of directory ids."""
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, ("admin",))
    data = await read_json(request)
    title = text_field(data, "title")
    codec = text_field(data, "video_codec", False) or "H264"
    record = data.get("record", True)
    if not isinstance(record, bool):
        raise HTTPProblem(400, "record is a boolean")
    rooms = choose(state.store, data.get("classrooms"), data.get("townships"))
    planned = data.get("rollcall_plan")
    if planned is not None and not isinstance(planned, dict):
        raise HTTPProblem(400, "rollcall_plan is {count, from_minute, to_minute}")
    times = (
        plan(*(planned.get(k) for k in ("count", "from_minute", "to_minute"))) if planned else ()
    )
    session = await create_lecture(
        state.store,
        state.attendance,
        title,
        by_whom(claims),
        video_codec=codec,
        recorded=record,
        rule=credit_rule(data),
        rooms=rooms,
        rollcalls=times,
    )
    base = f"{request.scheme}://{request.host}"
    return web.json_response(session_links(state.config, state.signer, session, base), status=201)


@documented(query={"township": STR}, answer=obj(("classrooms",), classrooms=ARR_OBJ))
async def classroom_directory(request: web.Request) -> web.Response:
    """``GET /api/classrooms[?township=T]`` (admin): the directory, for choosing a lecture's
    classrooms (import it with ``lecture-relay classrooms import``)."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ("admin",))
    township = request.query.get("township") or None
    found = state.store.classrooms(township=township)
    return web.json_response(
        {
            "classrooms": [
                {
                    "id": c.id,
                    "name": c.name,
                    "kind": c.kind,
                    "township": c.township,
                    "capacity": c.capacity,
                }
                for c in found
            ]  # fmt: skip
        }
    )


@documented(answer=obj(("storage", "sessions"), sessions=ARR_OBJ, townships=arr(STR)))
async def admin_overview(request: web.Request) -> web.Response:
    """Sessions with their state, replay jobs and disk use, for the admin page."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ("admin",))
    media_dir = state.config.media_root
    sessions = []
    for s in state.store.list_sessions():
        job = state.replays.state(s.id)
        live = state.live.find(s.id)
        sessions.append(
            {
                "id": s.id,
                "title": s.title,
                "status": s.status,
                "video_codec": s.video_codec,
                "created_at": s.created_at,
                "record": state.store.records(s.id),
                "replay_credit": state.store.replay_credit(s.id),
                "credit_threshold": state.store.credit_threshold(s.id),
                "viewers": len(live.viewers) if live else 0,
                "media": _media_state(state, live),
                "recording_bytes": recording_bytes(media_dir, s.id),
                "replay": job.public() if job else None,
            }
        )
    body = {"storage": usage(media_dir).as_json(), "sessions": sessions}
    body["fastpath"] = native.path()  # the fan-out loop: native or python
    body["townships"] = list(TOWNSHIPS)  # what personal links can be asked for by
    return web.json_response(body)


def _media_state(state: AppState, media) -> str:
    """Whether the lecture's media arrives, as this node sees it: ``flowing``; ``none`` (no
    publisher, or one that sends nothing: a session started and left, or paused); or in
    cluster mode, with nothing arriving here, ``unknown`` (the lecturer may publish to
    another node, whose media reaches this one only for its own viewers)."""
    if media is not None and media.media_flowing.is_set():
        return "flowing"
    if state.cluster is None or (media is not None and media.publisher is not None):
        return "none"
    return "unknown"


@documented(answer=obj(("mode", "workers"), mode=STR, workers=ARR_OBJ))
async def admin_cluster(request: web.Request) -> web.Response:
    """This node's workers and, in cluster mode, every live node's load (the admin page)."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ("admin",))
    pool, cluster = state.live.pool, state.cluster
    workers = [
        {
            "worker": 0,
            "up": True,
            "viewers": state.live.viewer_count() if pool is None else pool.local_viewers(),
            "restarts": 0,
        }
    ]
    if pool is not None:
        workers += [
            {
                "worker": h.index,
                "up": h.up.is_set(),
                "viewers": h.viewers,
                "packets_forwarded": h.counters.get("packets_out", 0),
                "restarts": max(h.starts - 1, 0),
            }
            for h in pool.workers.values()
        ]
    body: dict = {"mode": "cluster" if cluster else "single node", "workers": workers}
    body["ledger"] = state.attendance.ledger.status()  # an edge's: what waits for the home's
    if cluster is not None:
        body["node"] = cluster.id
        body["redis_up"] = cluster.redis_ok
        body["nodes"] = [
            {
                "id": n.id,
                "url": n.url,
                "home": n.home,
                "viewers": n.load,
                "workers": n.capacity,
                "share": round(n.share, 3),
            }
            for n in sorted(cluster.known_nodes, key=lambda n: n.id)
        ]
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_get("/api/sessions/{session}", session_info)
    app.router.add_get("/api/sessions/{session}/stats", session_stats)
    app.router.add_get("/api/sessions/{session}/quality", session_quality)
    app.router.add_post("/api/rooms/join", room_join)
    app.router.add_get("/api/admin/overview", admin_overview)
    app.router.add_get("/api/classrooms", classroom_directory)
    app.router.add_get("/api/admin/cluster", admin_cluster)
