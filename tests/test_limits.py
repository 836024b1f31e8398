"""Limits on what a stranger can repeat (issue 24, item 5): each refusal is a 429 with
Retry-After, and nobody else's requests pay for it."""

from __future__ import annotations

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from server.config import Rate
from tests.calls import call
from tests.client import watch
from tests.waiting import until


async def offer_and_walk_away(relay, sid: str, token: str) -> tuple[int, dict, RTCPeerConnection]:
    """A WHEP offer whose sender never takes the answer: the relay's side never connects."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with relay.http.post(
        f"{relay.base_url}/whep/{sid}",
        data=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    ) as resp:
        await resp.read()
        return resp.status, dict(resp.headers), pc


@pytest.mark.relay_config(pending_per_address=3, connect_timeout_s=1.5)
async def test_connections_that_never_connect_are_capped_per_address_and_closed(relay):
    links = relay.new_session()
    sid = links["session_id"]
    token = links["viewer_token"]
    pcs = []
    try:
        for _ in range(3):
            status, _, pc = await offer_and_walk_away(relay, sid, token)
            pcs.append(pc)
            assert status == 201
        status, headers, pc = await offer_and_walk_away(relay, sid, token)
        pcs.append(pc)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        media = relay.state.live.find(sid)
        assert len(media.viewers) == 3  # the refused one holds nothing
        # none connects: each is closed at its timeout, and its slot is free again
        await until(lambda: not media.viewers, timeout=10, what="unconnected viewers kept")
        pending = relay.state.limits.pending
        assert pending.pending("127.0.0.1") == 0 and pending.expired == 3
        assert not relay.state.attendance.peers  # never counted as attending
        # a viewer that does connect keeps its connection past the timeout
        good = await watch(relay.http, relay.base_url, sid, token)
        await until(lambda: good.pc.connectionState == "connected", timeout=10)
        await until(lambda: pending.pending("127.0.0.1") == 0, timeout=5)
        status, _, pc = await offer_and_walk_away(relay, sid, token)
        pcs.append(pc)
        assert status == 201
        await until(lambda: pending.expired == 4, timeout=10)
        assert good.resource in media.viewers and len(media.viewers) == 1
        await good.stop(relay.http)
    finally:
        for pc in pcs:
            await pc.close()


@pytest.mark.relay_config(room_code_rate=Rate(3, 60.0))
async def test_room_code_guesses_are_limited_and_an_ended_sessions_code_is_refused(relay):
    links = relay.new_session()
    code = links["rooms"][0]["code"]
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    for _ in range(3):
        status, _ = await call(relay, "POST", "/api/rooms/join", json={"code": wrong})
        assert status == 404
    async with relay.http.post(f"{relay.base_url}/api/rooms/join", json={"code": wrong}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    # once limited, a right guess is refused the same way: the guesser learns nothing
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": code})
    assert status == 429 and "token" not in body
    relay.state.limits.room_codes._buckets.clear()  # another minute, as far as the limit goes
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": code})
    assert status == 200 and body["token"]
    admin = relay.token("admin", None)
    assert (await call(relay, "POST", f"/api/sessions/{links['session_id']}/end", admin))[0] == 200
    status, body = await call(relay, "POST", "/api/rooms/join", json={"code": code})
    assert status == 410 and "token" not in body


@pytest.mark.relay_config(
    question_rate=Rate(2, 60.0), headcount_rate=Rate(2, 60.0), feedback_rate=Rate(1, 60.0)
)
async def test_questions_headcounts_and_feedback_are_rate_limited_per_participant(relay):
    links = relay.new_session()
    sid = links["session_id"]
    base = f"/api/sessions/{sid}"
    one, other = relay.token("member", sid, "M1"), relay.token("member", sid, "M2")
    room, room_b = links["rooms"][0]["token"], links["rooms"][1]["token"]
    for _ in range(2):
        assert (await call(relay, "POST", f"{base}/questions", one, {"text": "请问"}))[0] == 201
        assert (await call(relay, "POST", f"{base}/headcount", room, {"count": 30}))[0] == 200
    status, body = await call(relay, "POST", f"{base}/questions", one, {"text": "请问"})
    assert status == 429 and "questions" in body["error"]
    assert (await call(relay, "POST", f"{base}/headcount", room, {"count": 31}))[0] == 429
    # another member, another room: their own share
    assert (await call(relay, "POST", f"{base}/questions", other, {"text": "请问"}))[0] == 201
    assert (await call(relay, "POST", f"{base}/headcount", room_b, {"count": 9}))[0] == 200
    # what was refused is not in the record: two questions and one headcount of each room
    status, qs = await call(relay, "GET", f"{base}/questions", links["lecturer_token"])
    assert status == 200 and len(qs) == 3
    assert (await call(relay, "POST", f"{base}/feedback", one, {"rating": 5}))[0] == 201
    assert (await call(relay, "POST", f"{base}/feedback", one, {"rating": 5}))[0] == 429


@pytest.mark.relay_config(socket_auth_timeout_s=0.5)
async def test_a_heartbeat_socket_that_shows_no_token_is_closed(relay):
    links = relay.new_session()
    sid = links["session_id"]
    viewer = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    try:
        async with relay.http.ws_connect(f"{viewer.resource_url}/heartbeats") as ws:
            message = await ws.receive(timeout=10)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1008
        # one that shows its token in time stays open
        ws = await viewer.heartbeat_socket(relay.http, token_in_header=False)
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=1.5)
        assert not ws.closed
        await ws.close()
    finally:
        await viewer.stop(relay.http)
