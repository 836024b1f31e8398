"""A lecturer or a phone inside one of the network test bed's namespaces (tests/netbed.py):

    python tests/netbed_peer.py publish URL SESSION TOKEN SECONDS
    python tests/netbed_peer.py watch URL SESSION TOKEN SECONDS

Both print one JSON line when done: the lecturer what it sent, the phone what it decoded (video
frames, the first one's time after the offer, the seconds in which video advanced) and the
WHEP exchange's status. Real aiortc peers; the relay's address is the bed's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def publish(url: str, sid: str, token: str, seconds: float) -> dict:
    from tests.client import publish as whip
    from tests.sources import PatternVideoTrack, ToneAudioTrack

    async with aiohttp.ClientSession() as http:
        pub = await whip(http, url, sid, token, [ToneAudioTrack(), PatternVideoTrack(640, 360)])
        await asyncio.sleep(seconds)  # the lecture goes on for this long: the point of it
        await pub.stop(http)
    return {"published_s": seconds}


async def watch(url: str, sid: str, token: str, seconds: float) -> dict:
    from tests.client import SignallingError
    from tests.client import watch as whep

    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        # the ICE servers a page is given (a TURN credential of its own, with LR_TURN_SECRET)
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/api/sessions/{sid}", headers=auth) as resp:
            servers = (await resp.json())["ice_servers"]
        try:
            viewing = await whep(http, url, sid, token, ice_servers=servers)
        except SignallingError as exc:
            return {"status": exc.status, "error": str(exc)}
        video, audio = viewing.stats["video"], viewing.stats["audio"]
        advancing, sounding, last, last_audio = set(), set(), 0, 0
        deadline = started + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)  # sampling what was decoded, four times a second
            second = int(time.monotonic() - started)
            if video.frames > last:
                advancing.add(second)
                last = video.frames
            if audio.frames > last_audio:
                sounding.add(second)
                last_audio = audio.frames
        first = None if video.first_at is None else round(video.first_at - started, 2)
        out = {
            "status": 201,
            "video_frames": video.frames,
            "audio_frames": viewing.stats["audio"].frames,
            "first_frame_s": first,
            "seconds_with_video": len(advancing),
            "video_seconds": sorted(advancing),
            "audio_seconds": sorted(sounding),
            "seconds": int(seconds),
            "state": viewing.pc.connectionState,
            "pair": _pair_types(viewing.pc),
        }
        await viewing.stop(http)
    return out


def _pair_types(pc) -> list[str]:
    """The candidate types of the pair in use (``relay`` when through TURN), as aioice has it."""
    transport = pc.getTransceivers()[0].receiver.transport.transport
    pair = transport._connection._nominated.get(1)
    return [] if pair is None else [pair.local_candidate.type, pair.remote_candidate.type]


def main() -> None:
    mode, url, sid, token, seconds = sys.argv[1:6]
    run = publish if mode == "publish" else watch
    print(json.dumps(asyncio.run(run(url, sid, token, float(seconds)))), flush=True)


if __name__ == "__main__":
    main()
