"""End to end over loopback: an aiortc lecturer publishes by WHIP, aiortc viewers watch by WHEP
and decode what the relay forwards without decoding it itself."""

from __future__ import annotations

import pytest

from media.sources import PatternVideoTrack, ToneAudioTrack
from server.client import publish, watch


async def start_lecture(relay, links, codec="VP8", width=320, height=240):
    return await publish(
        relay.http,
        relay.base_url,
        links["session_id"],
        links["lecturer_token"],
        [ToneAudioTrack(), PatternVideoTrack(width, height)],
        video_codec=codec,
    )


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
    finally:
        for v in viewers:
            await v.stop()
        await pub.stop()
