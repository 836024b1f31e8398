"""WHIP ingest (RFC 9725) and WHEP playback: the same resource shape, two directions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from media.candidates import filter_candidates
from media.codecs import CodecMismatch
from media.peers import PeerRefused
from server.attendance.tracker import Identity
from server.auth import Claims
from server.config import IceServer
from server.ice import ice_servers_of, public_ice_servers
from server.routes.bodies import read_body, read_json
from server.routes.floor import speaker_feed, speaker_of
from server.state import STATE, AppState
from server.web.bearer import bearer_token, require
from server.web.errors import HTTPProblem
from server.web.openapi import BOOL, documented, obj

SDP = "application/sdp"
PUBLISH_ROLES = ("lecturer", "admin")
VIEW_ROLES = ("viewer", "room", "member", "lecturer", "admin")


@dataclass(frozen=True)
class Owner:
    """Who made a connection: only they (or an admin, or the session's lecturer for its
    publications) may end it or change its mode. Open-link viewers share one token and no
    subject, so for them the connection's own id (unguessable, never logged) is the key."""

    role: str
    subject: str | None
    token: str  # a digest of the bearer token that made it

    @classmethod
    def of(cls, request: web.Request, claims: Claims) -> Owner:
        token = (bearer_token(request) or "").encode()
        return cls(claims.role, claims.subject, hashlib.sha256(token).hexdigest())

    def allows(self, other: Owner, publication: bool) -> bool:
        if other.role == "admin" or (publication and other.role == "lecturer"):
            return True
        if (other.role, other.subject) != (self.role, self.subject):
            return False
        return self.role != "viewer" or other.token == self.token


async def negotiated(
    request: web.Request, state: AppState, claims: Claims, media, answer
) -> tuple[str, str]:
    """Run ``answer()`` (a publish or a subscribe on ``media`` or one of its feeds) within the
    caller's address's share of connections not yet up, and follow the new one: it is the
    caller's own, and it is closed if not connected in time (server/web/limits.py)."""
    pending = state.limits.pending
    address = request.remote or ""
    pending.reserve(address)
    try:
        rid, sdp = await answer()
    except BaseException as exc:
        pending.release(address)
        if isinstance(exc, CodecMismatch):
            raise HTTPProblem(406, str(exc)) from None
        if isinstance(exc, (ValueError, PeerRefused)):
            raise HTTPProblem(400, str(exc)) from None
        raise
    holder = media.holder_of(rid)
    peer = None
    if holder is not None:
        holder.owners[rid] = Owner.of(request, claims)
        peer = holder.viewers.get(rid) or holder.publisher
    if peer is None or peer.id != rid:
        pending.release(address)  # gone already
    else:
        pending.follow(address, peer, lambda: holder.stop_peer(rid, "connect_timeout"))
    return rid, sdp


NOBODY = Owner("", None, "")  # a connection made before its owner was noted: staff only


def owned(request: web.Request, claims: Claims, media, rid: str, kind: str):
    """The session or feed that holds connection ``rid`` of ``kind`` (whip: a publication,
    whep: a viewer), if ``claims`` may act on it: 404 when there is none, 403 when it is
    someone else's."""
    holder = media.holder_of(rid) if media is not None else None
    publication = holder is not None and holder.publisher is not None and holder.publisher.id == rid
    if holder is None or publication != (kind == "whip"):
        raise HTTPProblem(404, "unknown resource")
    owner = holder.owners.get(rid, NOBODY)
    if not owner.allows(Owner.of(request, claims), publication):
        raise HTTPProblem(403, "this connection belongs to someone else")
    return holder


def ice_link_headers(servers: list[IceServer]) -> list[str]:
    links = []
    for server in servers:
        link = f'<{server.urls}>; rel="ice-server"'
        if server.username and server.credential:
            link += (
                f'; username="{server.username}"; credential="{server.credential}"'
                '; credential-type="password"'
            )
        links.append(link)
    return links


async def read_offer(request: web.Request, state: AppState) -> str:
    if request.content_type != SDP:
        raise HTTPProblem(415, f"Content-Type must be {SDP}", {"Accept-Post": SDP})
    body = await read_body(request, state.config.max_sdp_bytes, "SDP offer")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPProblem(400, "SDP offer is not UTF-8") from None
    return filter_candidates(text, state.config.ice_peer_networks)


def created(
    request: web.Request, state: AppState, claims: Claims, location: str, answer: str
) -> web.Response:
    # body, not text: RFC 9725 writes the answer's type as plain application/sdp (aiohttp
    # would add "; charset=utf-8" to a text body, and strict clients compare the whole value)
    response = web.Response(status=201, body=answer.encode(), content_type=SDP)
    response.headers["Location"] = location
    for link in ice_link_headers(ice_servers_of(state.config, state.signer, claims)):
        response.headers.add("Link", link)
    return response


async def whip_post(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    if "feed" in request.query:
        return await feed_publish(request, state, sid)
    claims = require(request, state.signer, PUBLISH_ROLES, sid)
    offer = await read_offer(request, state)
    media = await state.live.open(sid)
    rid, answer = await negotiated(request, state, claims, media, lambda: media.publish(offer))
    return created(request, state, claims, resource_url(state, "whip", sid, rid), answer)


async def feed_publish(request: web.Request, state: AppState, sid: str) -> web.Response:
    """``?feed=speaker``: a room or member given the floor; ``?feed=wall``: a room's camera
    for the lecturer's wall of rooms."""
    kind = request.query["feed"]
    if kind == "low":  # the lecturer's low-bitrate copy, for viewers on weak networks
        claims = require(request, state.signer, PUBLISH_ROLES, sid)
        return await _publish_feed(request, state, sid, "low", claims)
    claims = require(request, state.signer, ("room", "member"), sid)
    who = speaker_of(state, claims)[0]
    if kind == "speaker":
        if not state.floor.may_speak(sid, who):
            raise HTTPProblem(403, "the lecturer has not given you the floor")
        name = speaker_feed(who)
    elif kind == "wall" and claims.role == "room":
        name = f"wall:{claims.subject}"
    else:
        raise HTTPProblem(400, "feed must be speaker, wall (rooms) or low (lecturer)")
    return await _publish_feed(request, state, sid, name, claims)


async def _publish_feed(
    request: web.Request, state: AppState, sid: str, name: str, claims: Claims
) -> web.Response:
    offer = await read_offer(request, state)
    media = state.live.get(sid)
    feed = media.feed(name, create=True)
    rid, answer = await negotiated(request, state, claims, media, lambda: feed.publish(offer))
    return created(request, state, claims, resource_url(state, "whip", sid, rid), answer)


async def feed_watch(request: web.Request, state: AppState, sid: str) -> web.Response:
    """``?feed=speaker:<who>`` (anyone of the session) or ``?feed=wall:<room>`` (lecturer)."""
    name = request.query["feed"]
    roles = ("lecturer", "admin") if name.startswith("wall:") else VIEW_ROLES
    claims = require(request, state.signer, roles, sid)
    offer = await read_offer(request, state)
    media = state.live.find(sid)
    feed = media.feed(name) if media is not None else None
    if feed is None:
        raise HTTPProblem(404, f"no feed {name} in this session")
    rid, answer = await negotiated(request, state, claims, media, lambda: feed.subscribe(offer))
    return created(request, state, claims, resource_url(state, "whep", sid, rid), answer)


async def whep_post(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    if "feed" in request.query:
        return await feed_watch(request, state, sid)
    claims = require(request, state.signer, VIEW_ROLES, sid)
    offer = await read_offer(request, state)
    placement = state.live.placement
    target = await placement.where(sid, request.query.get("node"))
    if target is not None:
        node, url = target
        # Browsers drop Authorization on a cross-origin redirect: carry the token.
        query = dict(request.query, node=node, token=bearer_token(request) or "")
        raise web.HTTPTemporaryRedirect(f"{url}/whep/{sid}?{urlencode(query)}")
    media = await state.live.open(sid)
    await placement.feed(media)
    audio_only = request.query.get("audio_only") in ("1", "true", "yes")
    identity = identity_of(claims, request.remote or "", audio_only)
    rid, answer = await negotiated(
        request,
        state,
        claims,
        media,
        lambda: state.live.subscribe(media, offer, identity, audio_only),
    )
    state.metrics.joins += 1
    return created(request, state, claims, resource_url(state, "whep", sid, rid), answer)


def resource_url(state: AppState, kind: str, sid: str, rid: str) -> str:
    """Relative on one node; absolute in a cluster (the page may have been redirected)."""
    path = f"/{kind}/{sid}/{rid}"
    return state.config.base_url + path if state.cluster is not None else path


def identity_of(claims: Claims, address: str, audio_only: bool) -> Identity:
    if claims.role == "member":
        participant, how = f"member:{claims.subject}", claims.via
    elif claims.role == "room":
        participant, how = f"room:{claims.subject}", "token"
    elif claims.role == "viewer":
        participant, how = "viewer:" + secrets.token_hex(6), "none"
    else:
        participant, how = f"staff:{claims.role}", "token"
    return Identity(participant, how, claims.role, claims.subject, address, audio_only)


async def resource_delete(request: web.Request) -> web.Response:
    """End a connection: its owner, an admin, or the session's lecturer for a publication."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    rid = request.match_info["resource"]
    kind = request.path.split("/", 2)[1]
    roles = PUBLISH_ROLES + ("room", "member") if kind == "whip" else VIEW_ROLES
    claims = require(request, state.signer, roles, sid)
    holder = owned(request, claims, state.live.find(sid), rid, kind)
    if not await holder.stop_peer(rid, "delete"):
        raise HTTPProblem(404, "unknown resource")
    await state.attendance.drain()  # the leave is on disk before we answer
    return web.Response(status=200)


@documented(
    body=obj(("audio_only",), audio_only=BOOL), answer=obj(("audio_only",), audio_only=BOOL)
)
async def viewer_mode(request: web.Request) -> web.Response:
    """``POST /whep/{session}/{resource}/mode`` with ``{"audio_only": true|false}``."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    rid = request.match_info["resource"]
    claims = require(request, state.signer, VIEW_ROLES, sid)
    media = state.live.find(sid)
    holder = owned(request, claims, media, rid, "whep")
    audio_only = (await read_json(request)).get("audio_only")
    if not isinstance(audio_only, bool):
        raise HTTPProblem(400, "audio_only must be a boolean")
    await holder.viewers[rid].choose_audio_only(audio_only)
    return web.json_response({"audio_only": audio_only})


ENDPOINT_ALLOW = "POST, OPTIONS"
RESOURCE_ALLOW = "DELETE, OPTIONS"


async def resource_other(request: web.Request) -> web.Response:
    """Any other method on a WHIP/WHEP resource: 405 with its Allow."""
    if request.method == "OPTIONS":
        return web.Response(status=200, headers={"Allow": RESOURCE_ALLOW})
    if request.method == "PATCH":
        reason = "trickle ICE and ICE restart are not supported; send a full offer"
    else:
        reason = f"a WHIP/WHEP resource takes {RESOURCE_ALLOW}"
    raise HTTPProblem(405, reason, {"Allow": RESOURCE_ALLOW})


async def endpoint_other(request: web.Request) -> web.Response:
    """Any other method on a WHIP/WHEP endpoint: 405 with its Allow."""
    reason = f"a WHIP/WHEP endpoint takes {ENDPOINT_ALLOW}"
    raise HTTPProblem(405, reason, {"Allow": ENDPOINT_ALLOW})


async def options(request: web.Request) -> web.Response:
    """The ICE servers, for a client that asks before its offer (RFC 9725 section 4.6): with
    their credentials only to a caller that shows a token of the session."""
    state: AppState = request.app[STATE]
    servers = public_ice_servers(state.config)
    if bearer_token(request):
        claims = require(request, state.signer, VIEW_ROLES, request.match_info["session"])
        servers = ice_servers_of(state.config, state.signer, claims)
    response = web.Response(status=200, headers={"Allow": ENDPOINT_ALLOW})
    response.headers["Accept-Post"] = SDP
    for link in ice_link_headers(servers):
        response.headers.add("Link", link)
    return response


def add_routes(app: web.Application) -> None:
    for kind, post in (("whip", whip_post), ("whep", whep_post)):
        app.router.add_post(f"/{kind}/{{session}}", post)
        app.router.add_route("OPTIONS", f"/{kind}/{{session}}", options)
        app.router.add_delete(f"/{kind}/{{session}}/{{resource}}", resource_delete)
        app.router.add_route("*", f"/{kind}/{{session}}", endpoint_other)
        app.router.add_route("*", f"/{kind}/{{session}}/{{resource}}", resource_other)
    app.router.add_post("/whep/{session}/{resource}/mode", viewer_mode)
