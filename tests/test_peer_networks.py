"""``LR_ICE_PEER_NETWORKS`` holds for the candidates the relay learns from a peer's checks
(peer-reflexive) as it does for those an offer names (issue 30)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.calls import call


def with_decoy(sdp: str) -> str:
    """The offer with the decoy candidate in each media section."""
    out = []
    for line in sdp.splitlines():
        out.append(line)
        if line.startswith("m="):
            out.append(DECOY)
    return "\r\n".join(out) + "\r\n"


def relay_connection(media, rid: str):
    """The relay side's aioice connection of viewer ``rid``."""
    pc = media.viewers[rid].pc
    return pc.getTransceivers()[0].receiver.transport.transport._connection


# The viewer is on 127.0.0.1, outside the allowed network; its offer also names an allowed
# address where nothing listens (the discard port), so the relay has a candidate to check and
# its ICE agent runs: before, it learned 127.0.0.1 from the viewer's checks and connected.
ALLOWED = "127.0.0.2"
DECOY = f"a=candidate:9 1 udp 2130706431 {ALLOWED} 9 typ host"


@pytest.mark.relay_config(ice_peer_networks=(f"{ALLOWED}/32",))
async def test_checks_from_outside_the_allowed_networks_teach_the_relay_nothing(relay):
    """The offer's candidates outside the networks are dropped, and the peer's checks from
    outside them (which aioice would have learned its address from) go unanswered."""
    links = relay.new_session()
    sid = links["session_id"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with relay.http.post(
            f"{relay.base_url}/whep/{sid}",
            data=with_decoy(pc.localDescription.sdp),
            headers={
                "Authorization": f"Bearer {links['viewer_token']}",
                "Content-Type": "application/sdp",
            },
        ) as resp:
            assert resp.status == 201
            rid = resp.headers["Location"].rsplit("/", 1)[1]
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))  # checks begin
        media = relay.state.live.find(sid)
        connection = relay_connection(media, rid)
        viewer = media.viewers[rid]
        # on loopback, learning the peer's address and connecting takes well under a second
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(viewer.connected.wait(), 4)
        assert [c for c in connection._remote_candidates if c.type == "prflx"] == []
        assert pc.iceConnectionState != "completed"
        status, _ = await call(relay, "GET", f"/api/sessions/{sid}/stats", links["lecturer_token"])
        assert status == 200
    finally:
        await pc.close()
