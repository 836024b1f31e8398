"""``serve --workers 2``: the primary feeds a media worker over an RTP pipe on loopback; a
viewer placed there decodes the lecture and counts in attendance; a worker that is killed
takes only its own viewers, which re-join, and comes back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from server.attendance.ledger import Ledger
from tests.client import SignallingError, publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_attendance_cli import ROOT, cli, env_for
from tests.test_cli import free_port
from tests.waiting import stop_server, until


async def start_server(tmp_path: Path, workers: int, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--workers", str(workers)],
        cwd=ROOT,
        env=env_for(tmp_path, LR_PORT=str(port), **env),
        stdout=subprocess.PIPE,
        text=True,
    )
    # the banner is printed once every worker has registered
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert "listening" in line, line
    return proc, f"http://127.0.0.1:{port}"


async def metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name and not name.startswith("#")
    }


def children(pid: int, named: str) -> list[int]:
    """Child processes of ``pid`` whose command line has ``named`` in it (the server's other
    child is its ledger writer)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    kids = [int(p) for p in text.split()]
    return [p for p in kids if named in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")]


async def joined(http, viewing) -> bool:
    """The page's heartbeat is accepted once the relay saw media reach the connection."""
    status, _ = await viewing.heartbeat(http)
    return status == 200


async def test_viewers_are_spread_over_workers_and_survive_a_worker_kill(tmp_path):
    links = json.loads(cli(tmp_path, "session", "create", "--title", "多进程", "--json").stdout)
    sid = links["session_id"]
    rooms = links["rooms"]
    proc, url = await start_server(tmp_path, 2)
    try:
        async with aiohttp.ClientSession() as http:
            # ties go to the child worker (the primary also carries HTTP and ingest); a room
            # that connects before the lecture begins joins only when its media comes
            there = await watch(http, url, sid, rooms[1]["token"])
            await until(lambda: there.pc.connectionState == "connected", what="no connection")
            status, refused = await there.heartbeat(http)
            assert status == 409 and "media has not reached" in refused["error"]
            pub = await publish(
                http, url, sid, links["lecturer_token"], [ToneAudioTrack(), PatternVideoTrack()]
            )
            here = await watch(http, url, sid, rooms[0]["token"])
            m = await metrics(http, url)
            assert m['lr_worker_viewers{worker="0"}'] == 1
            assert m['lr_worker_viewers{worker="1"}'] == 1
            for v in (here, there):
                stats = await v.wait_frames("video", 15, timeout=20)
                await v.wait_frames("audio", 15, timeout=20)
                assert stats.sizes == {(320, 240)}
            # the remote viewer is known to attendance with its receiver reports
            await until(lambda: joined(http, there))
            await until(lambda: joined(http, here))

            # the viewer held by the worker asks for sound only, then for the picture again
            async def mode(audio_only: bool) -> None:
                async with http.post(
                    url + there.location + "/mode",
                    json={"audio_only": audio_only},
                    headers={"Authorization": f"Bearer {rooms[1]['token']}"},
                ) as resp:
                    assert resp.status == 200, await resp.text()

            await mode(True)
            frames = there.stats["video"].frames
            await there.wait_frames("audio", there.stats["audio"].frames + 100, timeout=10)
            assert there.stats["video"].frames <= frames + 3  # 2 s of sound, no picture
            await mode(False)
            await there.wait_frames("video", there.stats["video"].frames + 10, timeout=10)
            m = await metrics(http, url)
            assert m["lr_subscribers"] == 2 and m["lr_workers_up"] == 2
            admin = cli(tmp_path, "token", "admin").stdout.strip()
            async with http.get(
                f"{url}/api/admin/cluster", headers={"Authorization": f"Bearer {admin}"}
            ) as resp:
                view = await resp.json()
            assert [(w["worker"], w["up"], w["viewers"]) for w in view["workers"]] == [
                (0, True, 1),
                (1, True, 1),
            ]
            async with http.get(
                f"{url}/api/admin/cluster",
                headers={"Authorization": f"Bearer {links['viewer_token']}"},
            ) as resp:
                assert resp.status == 403

            # SIGKILL worker 1: its viewer's interval closes, the other viewer keeps watching
            [worker_pid] = children(proc.pid, "server worker")
            seen = here.stats["video"].frames
            Path(f"/proc/{worker_pid}")  # exists until reaped
            subprocess.run(["kill", "-KILL", str(worker_pid)], check=True)

            async def left() -> bool:
                return (await metrics(http, url))["lr_subscribers"] == 1

            await until(left)
            await here.wait_frames("video", seen + 15, timeout=15)
            status, _ = await there.heartbeat(http)
            assert status == 404
            await there.stop()

            # the page re-joins (on whichever worker is least loaded) and decodes again
            async def restarted() -> bool:
                return (await metrics(http, url))["lr_workers_up"] == 2

            await until(restarted, timeout=30)
            again = await watch(http, url, sid, rooms[1]["token"])
            await again.wait_frames("video", 10, timeout=20)
            await until(lambda: joined(http, again))
            assert (await metrics(http, url))['lr_worker_viewers{worker="1"}'] == 1
            for v in (here, again):
                await v.stop(http)
            await pub.stop(http)
    finally:
        stop_server(proc)

    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    try:
        rows = list(ledger.rows(sid))
    finally:
        ledger.close()
    participant = f"room:{rooms[1]['code']}"
    peers = [
        r.data["peer"] for r in rows if r.kind == "join" and r.data["participant"] == participant
    ]
    assert len(peers) == 2  # one participant, two intervals
    reasons = {r.data["peer"]: r.data["reason"] for r in rows if r.kind == "leave"}
    assert reasons[peers[0]] == "worker_lost"
    assert reasons[peers[1]] == "delete"


async def refused_vp8_viewer(http, url: str, sid: str, token: str) -> None:
    try:
        await watch(http, url, sid, token, video_codec="VP8")
    except SignallingError as exc:
        assert exc.status == 406, exc.body
    else:
        raise AssertionError("a VP8-only viewer was accepted for an H264 lecture")


async def test_workers_refuse_bad_offers_like_the_primary(tmp_path):
    links = json.loads(cli(tmp_path, "session", "create", "--title", "坏请求", "--json").stdout)
    sid = links["session_id"]
    proc, url = await start_server(tmp_path, 2)
    try:
        async with aiohttp.ClientSession() as http:
            first = await watch(http, url, sid, links["viewer_token"])  # placed on worker 1
            try:
                # the next viewer would go to worker 0 and the one after to worker 1: a
                # VP8-only offer for an H264 lecture is refused alike, before any worker
                # answers it, and a refused offer leaves no viewer counted anywhere
                await refused_vp8_viewer(http, url, sid, links["viewer_token"])
                m = await metrics(http, url)
                assert m['lr_worker_viewers{worker="0"}'] == 0
                assert m['lr_worker_viewers{worker="1"}'] == 1
                await refused_vp8_viewer(http, url, sid, links["viewer_token"])
                async with http.post(
                    f"{url}/internal/report", json={"worker": 1, "events": []}
                ) as resp:
                    assert resp.status == 403
            finally:
                await first.stop(http)
    finally:
        stop_server(proc)
