"""End to end over loopback: an aiortc lecturer publishes by WHIP, aiortc viewers watch by WHEP
and decode what the relay forwards without decoding it itself."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration

from media import native
from media.session import QUIET_TICKS, REPORT_INTERVAL_S, SessionMedia
from tests.client import publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.waiting import until


@pytest.fixture
def relay(relay_on_each_path):
    """Each test of this module on the native fan-out loop and on the Python one."""
    return relay_on_each_path


async def start_lecture(relay, links, codec="VP8", width=320, height=240):
    return await publish(
        relay.http,
        relay.base_url,
        links["session_id"],
        links["lecturer_token"],
        [ToneAudioTrack(), PatternVideoTrack(width, height)],
        video_codec=codec,
    )


async def sender_reports_seen(viewer) -> bool:
    kinds = set()
    for t in viewer.pc.getTransceivers():
        for s in (await t.receiver.getStats()).values():
            if s.type == "remote-outbound-rtp":
                kinds.add(t.kind)
    return kinds == {"audio", "video"}


async def inbound_lost(viewer) -> dict[str, int]:
    lost = {}
    for t in viewer.pc.getTransceivers():
        for s in (await t.receiver.getStats()).values():
            if s.type == "inbound-rtp":
                lost[t.kind] = s.packetsLost
    return lost


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_viewers_decode_the_lecture_in_its_codec(relay, codec):
    links = relay.new_session(video_codec=codec)
    pub = await start_lecture(relay, links, codec)
    viewers = [
        await watch(relay.http, relay.base_url, links["session_id"], links["viewer_token"])
        for _ in range(3)
    ]
    try:
        for v in viewers:
            video = await v.wait_frames("video", 20, timeout=15)
            await v.wait_frames("audio", 20, timeout=15)
            assert video.sizes == {(320, 240)}
        media = relay.state.live.find(links["session_id"])
        assert media.video_codec == codec
        assert media.video.packets_out > 0 and media.audio.packets_out > 0
        # on the loop the relay was started with: the native one sends each of them
        downtracks = [dt for viewer in media.viewers.values() for _, dt in viewer.tracks.values()]
        assert len(downtracks) == 6
        assert all((dt.native is not None) == (native.path() == "native") for dt in downtracks)
        assert all(dt.packets > 0 for dt in downtracks)
        # the relay's sender reports reach every viewer (what lip sync rests on)
        for v in viewers:
            await until(lambda v=v: sender_reports_seen(v), timeout=5)
    finally:
        for v in viewers:
            await v.stop()
        await pub.stop()


async def test_late_joiner_gets_keyframe_within_a_second(relay):
    links = relay.new_session()
    pub = await start_lecture(relay, links)
    sid = links["session_id"]
    first = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    await first.wait_frames("video", 30, timeout=15)
    media = relay.state.live.find(sid)
    requests_before = media.video.keyframes.sent
    # aiortc's encoder makes a keyframe only every 3000 frames unless asked: the late joiner
    # can only decode because the relay asks the publisher for one.
    late = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    try:
        stats = await late.wait_frames("video", 1, timeout=10)
        assert media.video.keyframes.sent > requests_before
        print(f"late joiner: first frame {stats.first_at - late.started:.2f} s after its offer")
    finally:
        await late.stop()
        await first.stop()
        await pub.stop()


async def test_viewer_leaving_leaves_the_others_untouched(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await start_lecture(relay, links)
    a = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    b = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    media = relay.state.live.find(sid)
    try:
        await a.wait_frames("video", 10, timeout=15)
        await b.wait_frames("video", 10, timeout=15)
        await a.stop(relay.http)  # DELETE
        assert len(media.viewers) == 1
        seen = b.stats["video"].frames
        await b.wait_frames("video", seen + 30, timeout=10)
        assert (await inbound_lost(b))["video"] <= 5
    finally:
        await b.stop()
        await pub.stop()


async def test_vanished_viewer_is_reaped_and_the_others_continue(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await start_lecture(relay, links)
    a = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    b = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    media = relay.state.live.find(sid)
    try:
        await a.wait_frames("video", 5, timeout=15)
        await a.pc.close()  # no DELETE: the page died
        await until(lambda: len(media.viewers) == 1, timeout=40)
        seen = b.stats["video"].frames
        await b.wait_frames("video", seen + 20, timeout=10)
    finally:
        await a.stop()
        await b.stop()
        await pub.stop()


async def test_publisher_reconnecting_resumes_every_viewer_without_renegotiation(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await start_lecture(relay, links)
    viewers = [
        await watch(relay.http, relay.base_url, sid, links["viewer_token"]) for _ in range(2)
    ]
    try:
        for v in viewers:
            await v.wait_frames("video", 20, timeout=15)
        answers = [v.pc.remoteDescription.sdp for v in viewers]
        await pub.pc.close()  # the lecturer's network dropped: no DELETE
        pub = await start_lecture(relay, links)
        for v, answer in zip(viewers, answers, strict=True):
            seen_video, seen_audio = v.stats["video"].frames, v.stats["audio"].frames
            await v.wait_frames("video", seen_video + 30, timeout=15)
            await v.wait_frames("audio", seen_audio + 30, timeout=15)
            assert v.pc.remoteDescription.sdp == answer and v.pc.connectionState == "connected"
            lost = await inbound_lost(v)
            # sequence numbers continue across the new publisher's SSRCs: a jump would show
            # as thousands of packets lost
            assert lost["video"] <= 20 and lost["audio"] <= 20, lost
            assert v.stats["video"].sizes == {(320, 240)}
    finally:
        for v in viewers:
            await v.stop()
        await pub.stop()


async def test_audio_only_viewer_gets_no_video_until_it_asks_again(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await start_lecture(relay, links)
    v = await watch(relay.http, relay.base_url, sid, links["viewer_token"], audio_only=True)
    media = relay.state.live.find(sid)
    try:
        await v.wait_frames("audio", 50, timeout=15)
        assert v.stats["video"].frames == 0
        viewer = media.viewers[v.resource]
        assert viewer.tracks["video"][1].packets == 0
        async with relay.http.post(
            relay.base_url + v.location + "/mode",
            json={"audio_only": False},
            headers={"Authorization": f"Bearer {links['viewer_token']}"},
        ) as resp:
            assert resp.status == 200
        await v.wait_frames("video", 10, timeout=10)
        async with relay.http.post(
            relay.base_url + v.location + "/mode",
            json={"audio_only": "yes"},
            headers={"Authorization": f"Bearer {links['viewer_token']}"},
        ) as resp:
            assert resp.status == 400
    finally:
        await v.stop()
        await pub.stop()


async def test_viewer_connection_quality_from_its_reports(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await start_lecture(relay, links)
    v = await watch(relay.http, relay.base_url, sid, relay.token("member", sid, "N1"))
    auth = {"Authorization": f"Bearer {links['lecturer_token']}"}
    try:
        await v.wait_frames("video", 10, timeout=15)

        async def measured() -> bool:
            async with relay.http.get(
                f"{relay.base_url}/api/sessions/{sid}/quality", headers=auth
            ) as resp:
                rows = await resp.json()
            return (
                bool(rows)
                and rows[0]["rtt_ms"] is not None
                and all(rows[0]["tracks"][k] for k in ("audio", "video"))
            )

        # a round trip needs one of our sender reports and the viewer's answer to it
        await until(measured, timeout=10)
        async with relay.http.get(
            f"{relay.base_url}/api/sessions/{sid}/quality", headers=auth
        ) as r:
            (row,) = await r.json()
        assert row["participant"] == "member:N1" and row["loss"] == 0 and not row["poor"]
        assert 0 <= row["rtt_ms"] < 1000 and row["tracks"]["video"]["jitter_ms"] >= 0
        async with relay.http.get(f"{relay.base_url}/metrics") as r:
            text = await r.text()
        assert 'lr_viewer_rtt_seconds{stat="max"}' in text
        viewer_token = {"Authorization": f"Bearer {links['viewer_token']}"}
        async with relay.http.get(
            f"{relay.base_url}/api/sessions/{sid}/quality", headers=viewer_token
        ) as r:
            assert r.status == 403
    finally:
        await v.stop()
        await pub.stop()


async def test_the_lectures_media_counts_as_stopped_after_quiet_seconds_not_a_gap():
    """``media_flowing`` (a viewer's join waits for it; a page asks it when its picture stops)
    is set by the first packets and cleared only after QUIET_TICKS seconds without one: a still
    screen shared without a microphone sends little, and its gaps are not a pause."""
    media = SessionMedia("flowing", "H264", RTCConfiguration(iceServers=[]))
    loop = asyncio.get_running_loop()
    media._ensure_ticker()
    try:
        media.video.packets_in += 1  # as a forwarder counts what reaches it
        await asyncio.wait_for(media.media_flowing.wait(), 5 * REPORT_INTERVAL_S)
        quiet_since = loop.time()
        await until(lambda: not media.media_flowing.is_set(), 5 + QUIET_TICKS, 0.05)
        assert loop.time() - quiet_since >= (QUIET_TICKS - 1) * REPORT_INTERVAL_S
        media.audio.packets_in += 1  # and again when media comes back
        await asyncio.wait_for(media.media_flowing.wait(), 5 * REPORT_INTERVAL_S)
    finally:
        await media.close()
