"""WHIP and WHEP as RFC 9725 writes them, for clients nobody here wrote (issue 30): exact
media types, OPTIONS, Allow on every 405, and CORS in every mode."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.test_attendance import lecture

PLAYER = "http://player.example"


async def offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_the_answer_is_application_sdp_exactly_and_options_is_200(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await lecture(relay, links)
    pc, sdp = await offer()
    try:
        async with relay.http.post(
            f"{relay.base_url}/whep/{sid}",
            data=sdp,
            headers={
                "Authorization": f"Bearer {links['viewer_token']}",
                "Content-Type": "application/sdp",
            },
        ) as resp:
            assert resp.status == 201
            assert resp.headers["Content-Type"] == "application/sdp"  # no charset parameter
            assert resp.headers["Location"].startswith(f"/whep/{sid}/")
        for kind in ("whip", "whep"):
            async with relay.http.options(f"{relay.base_url}/{kind}/{sid}") as resp:
                assert resp.status == 200
                assert resp.headers["Accept-Post"] == "application/sdp"
                assert resp.headers["Allow"] == "POST, OPTIONS"
    finally:
        await pc.close()
        await pub.stop()


async def test_every_405_says_the_same_allow(relay):
    sid = relay.new_session()["session_id"]
    token = {"Authorization": f"Bearer {relay.token('admin', None)}"}
    for kind in ("whip", "whep"):
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            async with relay.http.request(
                method, f"{relay.base_url}/{kind}/{sid}", headers=token
            ) as r:
                assert (r.status, r.headers["Allow"]) == (405, "POST, OPTIONS"), (kind, method)
                assert (await r.json())["status"] == 405
        for method in ("GET", "PUT", "PATCH", "POST"):
            url = f"{relay.base_url}/{kind}/{sid}/some-resource"
            async with relay.http.request(method, url, headers=token) as r:
                assert (r.status, r.headers["Allow"]) == (405, "DELETE, OPTIONS"), (kind, method)
        async with relay.http.patch(f"{relay.base_url}/{kind}/{sid}/x", headers=token) as r:
            assert "trickle ICE" in (await r.json())["error"]
            assert "Accept-Patch" not in r.headers  # PATCH is not supported (yet)


async def preflight(relay, path: str, origin: str, method: str = "POST"):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with relay.http.options(relay.base_url + path, headers=headers) as resp:
        return resp.status, resp.headers


async def test_cors_on_whip_whep_and_the_session_in_plain_serve(relay):
    links = relay.new_session()
    sid = links["session_id"]
    for path, method in (
        (f"/whip/{sid}", "POST"),
        (f"/whep/{sid}", "POST"),
        (f"/whep/{sid}/any", "DELETE"),
        (f"/whep/{sid}/any", "PATCH"),
        (f"/api/sessions/{sid}", "GET"),
    ):
        status, h = await preflight(relay, path, PLAYER, method)
        assert status == 204, path
        assert h["Access-Control-Allow-Origin"] == "*"
        assert method in h["Access-Control-Allow-Methods"]
        allowed = h["Access-Control-Allow-Headers"]
        assert "Authorization" in allowed and "Content-Type" in allowed and "If-Match" in allowed
        assert "Access-Control-Allow-Credentials" not in h
    # the answers themselves carry it, refusals included, and expose what a client reads
    headers = {"Origin": PLAYER, "Authorization": f"Bearer {links['viewer_token']}"}
    async with relay.http.get(f"{relay.base_url}/api/sessions/{sid}", headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
        exposed = resp.headers["Access-Control-Expose-Headers"]
        for name in ("Location", "Link", "ETag", "Accept-Patch"):
            assert name in exposed
    async with relay.http.post(f"{relay.base_url}/whep/{sid}", headers={"Origin": PLAYER}) as resp:
        assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"
    # the rest of the API is not for other origins
    status, h = await preflight(relay, f"/api/sessions/{sid}/attendance", PLAYER, "GET")
    assert "Access-Control-Allow-Origin" not in h


@pytest.mark.relay_config(cors_origins=("http://school.example",))
async def test_cors_with_a_list_of_origins_echoes_only_those(relay):
    sid = relay.new_session()["session_id"]
    status, h = await preflight(relay, f"/whep/{sid}", "http://school.example")
    assert status == 204 and h["Access-Control-Allow-Origin"] == "http://school.example"
    assert "Origin" in h.getall("Vary")
    status, h = await preflight(relay, f"/whep/{sid}", PLAYER)
    assert status == 403 and "Access-Control-Allow-Origin" not in h
    async with relay.http.options(f"{relay.base_url}/whep/{sid}", headers={"Origin": PLAYER}) as r:
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
