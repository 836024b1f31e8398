"""Live recording: remuxed, never re-encoded; one continuous file across a publisher
reconnect; readable after the server is killed."""

from __future__ import annotations

import asyncio

import av
import pytest

from tests.client import publish
from tests.sources import clip_tracks
from tests.waiting import until


def probe(path) -> dict:
    """Decode the whole recording; per stream: codec, frames, first and last pts (s), size."""
    out = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            out[stream.type] = {"codec": stream.codec_context.name, "frames": 0, "pts": []}
        for packet in container.demux():
            if packet.size == 0:
                continue
            info = out[packet.stream.type]
            for frame in packet.decode():
                info["frames"] += 1
                info["pts"].append(float(frame.pts * frame.time_base))
                if packet.stream.type == "video":
                    info["size"] = (frame.width, frame.height)
    return out


async def record(relay, links, codec, seconds_of_frames=60):
    """Publish pre-encoded audio + video that share one clock (no encoder delays the truth)."""
    audio, video = clip_tracks(4, codec.lower(), 320, 240)
    pub = await publish(
        relay.http,
        relay.base_url,
        links["session_id"],
        links["lecturer_token"],
        [audio, video],
        video_codec=codec,
    )
    media = relay.state.live.find(links["session_id"])
    await until(
        lambda: (
            media.recorder is not None
            and media.recorder.tracks["video"].frames >= seconds_of_frames
        ),
        20,
        what="the recording did not grow",
    )
    return pub, video, media


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_recording_decodes_with_the_published_frames_in_sync(relay, codec):
    links = relay.new_session(video_codec=codec)
    pub, video, media = await record(relay, links, codec)
    await pub.stop()
    sent = video.sent
    await relay.state.live.end(links["session_id"])  # closes the file
    (path,) = media.recordings
    assert path.suffix == (".webm" if codec == "VP8" else ".mkv")
    info = probe(path)
    assert info["video"]["codec"] == codec.lower() and info["audio"]["codec"] == "opus"
    assert info["video"]["size"] == (320, 240)
    # every frame the lecturer sent, but those in flight at the end
    assert sent - 15 <= info["video"]["frames"] <= sent
    assert info["audio"]["frames"] >= 50
    # A/V sync: both sources' first packets were due at the same instant
    offset = info["video"]["pts"][0] - info["audio"]["pts"][0]
    assert abs(offset) <= 0.040, offset
    assert media.recorder.tracks["video"].dropped == 0
    async with relay.http.get(relay.base_url + "/metrics") as resp:
        text = await resp.text()
    assert "lr_recording_packets_total" in text and "lr_recording_cpu_seconds_total" in text


async def test_a_publisher_reconnect_continues_the_same_recording(relay):
    links = relay.new_session()
    pub, video, media = await record(relay, links, "VP8", 30)
    first_count = media.recorder.tracks["video"].frames
    await pub.pc.close()  # the lecturer's network dropped
    pub, video2, media = await record(relay, links, "VP8", first_count + 30)
    await pub.stop()
    await relay.state.live.end(links["session_id"])
    assert len(media.recordings) == 1
    info = probe(media.recordings[0])
    pts = info["video"]["pts"]
    assert info["video"]["frames"] >= first_count + 30 - 20
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))  # one timeline, no rewind


async def test_a_killed_server_leaves_a_readable_recording(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    import aiohttp

    from tests.test_attendance_cli import ROOT, cli, env_for
    from tests.test_cli import free_port
    from tests.waiting import wait_health

    created = cli(
        tmp_path, "session", "create", "--title", "录制", "--video-codec", "VP8", "--json"
    )
    links = json.loads(created.stdout)
    port = free_port()
    env = env_for(tmp_path, LR_PORT=str(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--workers", "1"], cwd=ROOT, env=env
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_health, port)
        async with aiohttp.ClientSession() as http:
            audio, video = clip_tracks(4, "vp8", 320, 240)
            pub = await publish(
                http,
                f"http://127.0.0.1:{port}",
                links["session_id"],
                links["lecturer_token"],
                [audio, video],
            )
            recordings = tmp_path / "data" / "recordings"
            # wait until a good part of the file is on disk (clusters are written as they close)
            await until(
                lambda: (
                    max((p.stat().st_size for p in recordings.glob("*.webm")), default=0) >= 200_000
                ),
                20,
                0.1,
                "nothing recorded",
            )
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            await pub.pc.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    (path,) = recordings.glob("*.webm")
    info = probe(path)
    assert info["video"]["frames"] >= 30 and info["video"]["size"] == (320, 240)
    assert info["audio"]["frames"] >= 30
