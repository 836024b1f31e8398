"""The WHIP/WHEP contract: status codes, headers, and every refusal with a reason."""

from __future__ import annotations

import os
import re

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from media.candidates import filter_candidates
from media.forwarder import Forwarder
from media.peers import PeerRefused, Publisher, Viewer
from tests.client import publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.waiting import until


async def make_offer(kinds=("audio", "video"), direction="recvonly", video_codec=None) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        if direction == "sendonly":
            track = ToneAudioTrack() if kind == "audio" else PatternVideoTrack()
            pc.addTransceiver(track, direction="sendonly")
        else:
            pc.addTransceiver(kind, direction=direction)
    if video_codec:
        caps = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == f"video/{video_codec.lower()}"
        ]
        for t in pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(caps)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def post(relay, path, body, token, content_type="application/sdp"):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with relay.http.post(relay.base_url + path, data=body, headers=headers) as resp:
        return resp.status, resp.headers, await resp.text()


async def test_whep_answers_201_with_location_and_sdp_offering_loopback_only(relay):
    links = relay.new_session()
    status, headers, body = await post(
        relay, f"/whep/{links['session_id']}", await make_offer(), links["viewer_token"]
    )
    assert status == 201
    assert headers["Content-Type"].startswith("application/sdp")
    assert re.fullmatch(rf"/whep/{links['session_id']}/[\w-]+", headers["Location"])
    candidates = re.findall(r"a=candidate:\S+ \d+ \w+ \d+ (\S+) ", body)
    assert candidates and set(candidates) == {"127.0.0.1"}
    assert "a=sendonly" in body
    async with relay.http.delete(
        relay.base_url + headers["Location"],
        headers={"Authorization": f"Bearer {links['viewer_token']}"},
    ) as resp:
        assert resp.status == 200
    async with relay.http.delete(
        relay.base_url + headers["Location"],
        headers={"Authorization": f"Bearer {links['viewer_token']}"},
    ) as resp:
        assert resp.status == 404


async def test_wrong_content_type_is_415(relay):
    links = relay.new_session()
    status, headers, body = await post(
        relay,
        f"/whep/{links['session_id']}",
        await make_offer(),
        links["viewer_token"],
        "text/plain",
    )
    assert status == 415 and "application/sdp" in body


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_missing_or_bad_token_is_401(relay, kind):
    links = relay.new_session()
    offer = await make_offer()
    assert (await post(relay, f"/{kind}/{links['session_id']}", offer, None))[0] == 401
    forged = links["lecturer_token"][:-3] + "AAA"
    status, _, body = await post(relay, f"/{kind}/{links['session_id']}", offer, forged)
    assert status == 401 and "signature" in body
    expired = relay.token("lecturer", links["session_id"], ttl=-5)
    status, _, body = await post(relay, f"/{kind}/{links['session_id']}", offer, expired)
    assert status == 401 and "expired" in body


async def test_viewer_token_cannot_publish_and_tokens_stay_in_their_session(relay):
    links = relay.new_session()
    other = relay.new_session("另一讲座")
    offer = await make_offer(direction="sendonly")
    status, _, body = await post(
        relay, f"/whip/{links['session_id']}", offer, links["viewer_token"]
    )
    assert status == 403 and "role" in body
    status, _, body = await post(
        relay, f"/whip/{other['session_id']}", offer, links["lecturer_token"]
    )
    assert status == 403 and "another session" in body


async def test_unknown_session_is_404(relay):
    admin = relay.token("admin", None)
    status, _, body = await post(relay, "/whep/nosuchsession", await make_offer(), admin)
    assert status == 404 and "unknown session" in body


@pytest.mark.parametrize(
    "sdp",
    ["", "hello", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "v=0\r\nm=video 9 UDP\r\n"],
)
async def test_malformed_sdp_is_400(relay, sdp):
    links = relay.new_session()
    status, _, body = await post(relay, f"/whep/{links['session_id']}", sdp, links["viewer_token"])
    assert status == 400, body
    assert "SDP" in body or "sdp" in body


async def test_oversized_offer_is_413(relay):
    links = relay.new_session()
    body = "v=0\r\n" + "a=x-padding:" + "x" * (relay.config.max_sdp_bytes + 10) + "\r\n"
    status, _, text = await post(relay, f"/whep/{links['session_id']}", body, links["viewer_token"])
    assert status == 413 and "larger" in text


async def test_viewer_that_cannot_decode_the_lecture_codec_gets_406(relay):
    links = relay.new_session(video_codec="H264")
    offer = await make_offer(video_codec="VP8")
    status, _, body = await post(
        relay, f"/whep/{links['session_id']}", offer, links["viewer_token"]
    )
    assert status == 406 and "H264" in body


async def test_patch_is_405_and_unknown_resource_delete_is_404(relay):
    links = relay.new_session()
    auth = {"Authorization": f"Bearer {links['viewer_token']}"}
    url = f"{relay.base_url}/whep/{links['session_id']}/nope"
    async with relay.http.patch(url, data="x", headers=auth) as resp:
        assert resp.status == 405
    async with relay.http.delete(url, headers=auth) as resp:
        assert resp.status == 404


async def test_second_publisher_with_the_lecturer_token_takes_over(relay):
    links = relay.new_session()
    sid = links["session_id"]
    first = await publish(
        relay.http, relay.base_url, sid, links["lecturer_token"], [ToneAudioTrack()]
    )
    second = await publish(
        relay.http, relay.base_url, sid, links["lecturer_token"], [ToneAudioTrack()]
    )
    media = relay.state.live.find(sid)
    assert media.publisher is not None and second.location.endswith(media.publisher.id)
    assert first.location != second.location
    await first.stop()
    await second.stop(relay.http)
    assert media.publisher is None


async def test_metrics_are_prometheus_text(relay):
    links = relay.new_session()
    viewer = await watch(relay.http, relay.base_url, links["session_id"], links["viewer_token"])
    async with relay.http.get(relay.base_url + "/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert "lr_subscribers 1" in text
    assert "# TYPE lr_packets_forwarded_total counter" in text
    assert re.search(r'lr_keyframe_requests_total\{result="sent"\} \d+', text)
    await viewer.stop()


def test_candidate_filter_drops_mdns_and_addresses_outside_the_allowed_networks():
    sdp = (
        "v=0\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 10.1.2.3 50001 typ host\r\n"
        "a=candidate:3 1 udp 2122260223 0b6c5a6e-1b7e.local 50002 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    only_loopback = filter_candidates(sdp, ("127.0.0.0/8",))
    assert "127.0.0.1 50000" in only_loopback
    assert "10.1.2.3" not in only_loopback and ".local" not in only_loopback
    everything = filter_candidates(sdp, None)
    assert "10.1.2.3" in everything and ".local" not in everything


def open_udp_sockets() -> int:
    """UDP sockets this process holds (each aiortc peer connection gathers at least one)."""
    inodes = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name) as f:
            inodes |= {line.split()[9] for line in f.readlines()[1:]}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def break_bundle(offer: str) -> str:
    """A BUNDLE group led by a mid no section has: aiortc accepts it, then has no transport
    for the bundled sections when it makes the answer."""
    bundle = re.search(r"a=group:BUNDLE ([^\r\n]*)", offer)
    assert bundle, offer
    return offer.replace(bundle.group(0), f"a=group:BUNDLE 9 {bundle.group(1)}")


def drop_direction(offer: str) -> str:
    """Sections without a direction attribute: aiortc's createAnswer raises ValueError."""
    return re.sub(r"a=(sendonly|recvonly|sendrecv)\r\n", "", offer)


async def test_an_offer_aiortc_cannot_answer_is_400_and_leaves_no_connection_open(relay):
    links = relay.new_session()
    sid = links["session_id"]
    viewer_offer = break_bundle(await make_offer())
    publisher_offer = break_bundle(await make_offer(direction="sendonly"))
    # first a good exchange, so the relay's own sockets (HTTP, the session) are all open
    viewing = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    await viewing.stop(relay.http)
    media = relay.state.live.find(sid)
    await until(lambda: not media.viewers, what="the good viewer did not go")
    before = open_udp_sockets()
    cases = [
        ("/whep/" + sid, viewer_offer, links["viewer_token"]),
        ("/whip/" + sid, publisher_offer, links["lecturer_token"]),
        ("/whip/" + sid + "?feed=low", publisher_offer, links["lecturer_token"]),
        # the refused publication above made the feed; watching it refuses the same way
        ("/whep/" + sid + "?feed=low", viewer_offer, links["viewer_token"]),
    ]
    for path, offer, token in cases:
        status, _, body = await post(relay, path, offer, token)
        assert status == 400, (path, status, body)
        assert "BUNDLE group names mid 9" in body, body
    assert not media.viewers and media.publisher is None
    assert not media.feeds["low"].viewers and media.feeds["low"].publisher is None
    await until(
        lambda: open_udp_sockets() <= before,
        timeout=5,
        what="a refused offer's peer connection kept its sockets open",
    )


@pytest.mark.parametrize("side", ["viewer", "publisher"])
async def test_a_failure_while_answering_closes_the_peer_connection(side):
    audio, video = Forwarder("audio", 48000), Forwarder("video", 90000)
    gone = []
    config = RTCConfiguration(iceServers=[])
    if side == "viewer":
        peer = Viewer(config, audio, video, "H264", gone.append)
        answering = peer.answer(drop_direction(await make_offer()))
    else:
        peer = Publisher(config, audio, video, "H264", gone.append)
        answering = peer.answer(drop_direction(await make_offer(direction="sendonly")), [])
    with pytest.raises(PeerRefused):
        await answering
    assert peer.closed and peer.pc.signalingState == "closed"
    assert gone == [] and video.viewers == 0
