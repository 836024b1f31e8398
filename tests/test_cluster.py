"""Cluster mode with a real redis-server: two nodes of two workers each on loopback.

Node A is home (database, ledger) and holds the lecture; node B is an edge with no ledger of its
own. A viewer placed on B gets the lecture pulled from A over RTP and decodes it; its attendance
travels through the Redis stream into A's ledger, every event once even when the ledger
writer is killed mid-session; when B is killed its viewer's interval closes (node_lost) and
the page's re-join lands on A.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
import redis.asyncio as aioredis

from server.attendance.ledger import Ledger
from tests.client import publish, watch
from tests.cluster_fixtures import ROOT, Node, cli, node_env, redis_server, redis_url  # noqa: F401
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_workers import metrics
from tests.waiting import until


def ledger_rows(data, sid):
    ledger = Ledger(data / "ledger.sqlite3")
    try:
        return list(ledger.rows(sid))
    finally:
        ledger.close()


async def test_viewer_on_edge_node_and_failures(tmp_path, redis_url):  # noqa: F811
    data_a, data_b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    links = json.loads(cli(data_a, "session", "create", "--title", "集群", "--json").stdout)
    sid, room = links["session_id"], links["rooms"][0]
    node_a = Node("A", data_a, redis_url, LR_LEDGER_WRITER="0")
    node_b = Node("B", data_b, redis_url, LR_CLUSTER_HOME="0")
    writer_env = node_env(data_a, LR_REDIS_URL=redis_url)
    writer = None
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await node_a.start()
        await node_b.start()
        writer = subprocess.Popen(
            [sys.executable, "-m", "server", "ledger-writer"], cwd=ROOT, env=writer_env
        )
        async with aiohttp.ClientSession() as http:
            pub = await publish(
                http,
                node_a.url,
                sid,
                links["lecturer_token"],
                [ToneAudioTrack(), PatternVideoTrack()],
            )

            async def origin_is_a() -> bool:
                return await r.hget(f"lr:session:{sid}", "origin") == "A"

            await until(origin_is_a)

            async def a_sees_b() -> bool:
                return (await metrics(http, node_a.url)).get("lr_cluster_nodes") == 2

            await until(a_sees_b)
            admin = cli(data_a, "token", "admin").stdout.strip()
            async with http.get(
                f"{node_a.url}/api/admin/cluster", headers={"Authorization": f"Bearer {admin}"}
            ) as resp:
                view = await resp.json()
            assert view["mode"] == "cluster" and view["redis_up"] is True
            assert [(n["id"], n["home"], n["workers"]) for n in view["nodes"]] == [
                ("A", True, 2),
                ("B", False, 2),
            ]
            # the first viewer stays on A (equal load, A prefers itself); the next one is
            # redirected (307) to B, which pulls the lecture from A
            first = await watch(http, node_a.url, sid, links["viewer_token"])
            edge = await watch(http, node_a.url, sid, room["token"])
            assert first.resource_url.startswith(node_a.url)
            assert edge.resource_url.startswith(node_b.url), edge.resource_url
            for v in (first, edge):
                stats = await v.wait_frames("video", 15, timeout=20)
                assert stats.sizes == {(320, 240)}

            # heartbeats on B are accepted and reach A's ledger through the stream, also
            # across a SIGKILL of the ledger writer
            acked = 0

            async def beat() -> bool:
                nonlocal acked
                status, _ = await edge.heartbeat(http)
                acked += status == 200
                return status == 200

            await until(beat)
            for _ in range(3):
                assert await beat()
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
            for _ in range(4):
                assert await beat()
            writer = subprocess.Popen(
                [sys.executable, "-m", "server", "ledger-writer"], cwd=ROOT, env=writer_env
            )
            edge_peer = edge.resource

            async def all_beats_written() -> bool:
                rows = ledger_rows(data_a, sid)
                beats = [r for r in rows if r.kind == "heartbeat" and r.data["peer"] == edge_peer]
                return len(beats) >= acked

            await until(all_beats_written, timeout=20)

            # node B dies: its viewer's interval is closed by the writer once B's registry
            # entry lapses; the page re-joins through A and is served by A
            node_b.kill()

            async def closed() -> bool:
                rows = ledger_rows(data_a, sid)
                return any(r.kind == "leave" and r.data["peer"] == edge_peer for r in rows)

            await until(closed, timeout=20)
            await edge.stop()
            again = await watch(http, node_a.url, sid, room["token"])
            assert again.resource_url.startswith(node_a.url)
            await again.wait_frames("video", 10, timeout=20)
            await until(lambda: _joined(http, again))
            for v in (first, again):
                await v.stop(http)
            await pub.stop(http)
    finally:
        for node in (node_b, node_a):
            node.stop()
        if writer is not None and writer.poll() is None:
            writer.terminate()
            writer.wait(10)
        await r.aclose()

    rows = ledger_rows(data_a, sid)
    edge_beats = [r for r in rows if r.kind == "heartbeat" and r.data["peer"] == edge_peer]
    assert len(edge_beats) == acked  # every accepted heartbeat once, none twice
    joins = [
        r for r in rows if r.kind == "join" and r.data["participant"] == f"room:{room['code']}"
    ]
    assert len(joins) == 2  # one participant, two intervals
    leaves = {r.data["peer"]: r.data["reason"] for r in rows if r.kind == "leave"}
    assert leaves[edge_peer] == "node_lost"
    verified = cli(data_a, "verify", sid)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def _joined(http, viewing) -> bool:
    status, _ = await viewing.heartbeat(http)
    return status == 200


async def test_unreachable_redis_is_a_clear_error_at_start(tmp_path):
    from tests.test_cli import free_port

    out = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--workers", "1"],
        cwd=ROOT,
        env=node_env(
            tmp_path / "data", LR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", LR_PORT="0"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "cannot reach Redis" in out.stderr


def _home_and_edge(tmp_path, url: str, title: str) -> tuple[dict, Node, Node]:
    """A session created on A's data; A the home node, B an edge, one worker each."""
    links = json.loads(cli(tmp_path / "a" / "data", "session", "create", "--title", title,
                           "--json").stdout)  # fmt: skip
    node_a = Node("A", tmp_path / "a" / "data", url, workers=1)
    node_b = Node("B", tmp_path / "b" / "data", url, workers=1, LR_CLUSTER_HOME="0")
    return links, node_a, node_b


async def _lecture_on_home(http, node_a: Node, node_b: Node, links: dict):
    """Both nodes started, and the lecturer publishing to A."""
    await node_a.start()
    await node_b.start()
    tracks = [ToneAudioTrack(), PatternVideoTrack()]
    return await publish(http, node_a.url, links["session_id"], links["lecturer_token"], tracks)


async def test_redis_outage_mid_session_degrades_and_recovers(tmp_path, redis_server):  # noqa: F811
    # A is home and writes the ledger itself
    links, node_a, node_b = _home_and_edge(tmp_path, redis_server.url, "断网")
    sid, room, data_a = links["session_id"], links["rooms"][0], tmp_path / "a" / "data"
    try:
        await node_a.start()
        await node_b.start()
        async with aiohttp.ClientSession() as http:
            pub = await publish(
                http,
                node_a.url,
                sid,
                links["lecturer_token"],
                [ToneAudioTrack(), PatternVideoTrack()],
            )

            async def ready() -> bool:
                return (await metrics(http, node_a.url)).get("lr_cluster_nodes") == 2

            await until(ready)
            r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)

            async def origin_is_a() -> bool:  # else B sends its viewer to the home node
                return await r.hget(f"lr:session:{sid}", "origin") == "A"

            await until(origin_is_a)
            await r.aclose()
            edge = await watch(http, node_b.url, sid, room["token"])  # B serves it, from A
            assert edge.resource_url.startswith(node_b.url)
            await edge.wait_frames("video", 10, timeout=20)
            await until(lambda: _joined(http, edge))
            acked = 1

            redis_server.pause()

            async def b_notices() -> bool:
                return (await metrics(http, node_b.url)).get("lr_cluster_redis_up") == 0

            await until(b_notices, timeout=20)
            # the viewer keeps watching and the page's heartbeats are still accepted
            await edge.wait_frames("video", edge.stats["video"].frames + 30, timeout=15)
            for _ in range(3):
                status, _ = await edge.heartbeat(http)
                assert status == 200
                acked += 1
            kept = await metrics(http, node_b.url)  # on B's disk meanwhile, and shown
            assert kept["lr_attendance_backlog"] >= 3
            admin = cli(data_a, "token", "admin").stdout.strip()  # and on B's admin page
            async with http.get(
                f"{node_b.url}/api/admin/cluster", headers={"Authorization": f"Bearer {admin}"}
            ) as resp:
                shown = (await resp.json())["ledger"]
            assert shown["backlog"] >= 3 and shown["resent"] == 0

            redis_server.resume()

            async def b_recovers() -> bool:
                return (await metrics(http, node_b.url)).get("lr_cluster_redis_up") == 1

            await until(b_recovers, timeout=20)
            peer = edge.resource

            async def caught_up() -> bool:
                rows = ledger_rows(data_a, sid)
                return sum(r.kind == "heartbeat" and r.data["peer"] == peer for r in rows) >= acked

            await until(caught_up, timeout=20)

            async def confirmed() -> bool:  # B hears from the writer, and forgets them
                return (await metrics(http, node_b.url))["lr_attendance_backlog"] == 0

            await until(confirmed, timeout=10)
            assert (await metrics(http, node_b.url))["lr_attendance_resent_total"] == 0
            await edge.wait_frames("video", edge.stats["video"].frames + 10, timeout=15)
            await edge.stop(http)
            await pub.stop(http)

            async def left() -> bool:
                rows = ledger_rows(data_a, sid)
                return any(r.kind == "leave" and r.data["peer"] == peer for r in rows)

            await until(left, timeout=20)
    finally:
        for node in (node_b, node_a):
            node.stop()
    rows = ledger_rows(data_a, sid)
    leaves = [r.data["reason"] for r in rows if r.kind == "leave" and r.data["peer"] == peer]
    assert leaves == ["delete"]  # the outage did not pass for a lost node
    assert sum(r.kind == "heartbeat" and r.data["peer"] == peer for r in rows) == acked


async def test_an_edge_killed_in_a_redis_outage_keeps_what_it_acknowledged(
    tmp_path,
    redis_server,  # noqa: F811
):
    """Heartbeats an edge acknowledged while Redis was down are on its disk: killed (SIGKILL)
    before Redis came back, and started again, it sends them, and the ledger has each once."""
    links, node_a, node_b = _home_and_edge(tmp_path, redis_server.url, "宕机")
    sid, room, data_a = links["session_id"], links["rooms"][0], tmp_path / "a" / "data"
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with aiohttp.ClientSession() as http:
            pub = await _lecture_on_home(http, node_a, node_b, links)

            async def origin_is_a() -> bool:
                return await r.hget(f"lr:session:{sid}", "origin") == "A"

            await until(origin_is_a)
            edge = await watch(http, node_b.url, sid, room["token"])
            assert edge.resource_url.startswith(node_b.url)
            await edge.wait_frames("video", 10, timeout=20)
            await until(lambda: _joined(http, edge))
            peer = edge.resource
            acked = 1

            redis_server.pause()

            async def b_notices() -> bool:
                return (await metrics(http, node_b.url)).get("lr_cluster_redis_up") == 0

            await until(b_notices, timeout=20)
            for _ in range(3):
                status, _ = await edge.heartbeat(http)
                assert status == 200
                acked += 1
            node_b.kill()
            await edge.stop()  # its node is gone: no DELETE to send
            redis_server.resume()
            await node_b.start()

            async def caught_up() -> bool:
                rows = ledger_rows(data_a, sid)
                return sum(r.kind == "heartbeat" and r.data["peer"] == peer for r in rows) >= acked

            await until(caught_up, timeout=30)
            await pub.stop(http)
    finally:
        for node in (node_b, node_a):
            node.stop()
        await r.aclose()
    rows = ledger_rows(data_a, sid)
    assert sum(r.kind == "heartbeat" and r.data["peer"] == peer for r in rows) == acked


async def test_lecturer_republishing_to_another_node_resumes_the_session(
    tmp_path,
    redis_url,  # noqa: F811
):
    links, node_a, node_b = _home_and_edge(tmp_path, redis_url, "切换")
    sid = links["session_id"]
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with aiohttp.ClientSession() as http:
            pub = await _lecture_on_home(http, node_a, node_b, links)

            async def origin(name: str):
                async def check() -> bool:
                    return await r.hget(f"lr:session:{sid}", "origin") == name

                return check

            await until(await origin("A"))
            viewer = await watch(http, node_b.url, sid, links["viewer_token"])
            assert viewer.resource_url.startswith(node_b.url)
            await viewer.wait_frames("video", 10, timeout=20)

            node_a.kill()  # the origin dies; the viewer on B keeps its connection
            await pub.stop()
            again = await publish(
                http,
                node_b.url,
                sid,
                links["lecturer_token"],
                [ToneAudioTrack(), PatternVideoTrack(width=640, height=360)],
            )
            await until(await origin("B"))
            stats = await viewer.wait_frames("video", viewer.stats["video"].frames + 20, 20)
            assert (640, 360) in stats.sizes  # the new publication, same connection
            await viewer.stop(http)
            await again.stop(http)
    finally:
        for node in (node_b, node_a):
            node.stop()
        await r.aclose()


def _heartbeat(frames: int):
    from server.attendance.events import Heartbeat

    return Heartbeat("p1", frames, True, True, frames, frames)


def _frames(ledger: Ledger, sid: str) -> list[int]:
    return [r.data["frames_decoded"] for r in ledger.rows(sid) if r.kind == "heartbeat"]


async def _close(edge, ledger, redis, writer, running) -> None:
    if running is not None:
        writer.stop()
        await asyncio.wait({running}, timeout=5)
    await edge.aclose(timeout=1)
    ledger.close()
    await redis.aclose()


async def test_an_edge_acknowledges_from_its_disk_and_sends_after_an_outage_and_a_restart(
    tmp_path,
    redis_url,  # noqa: F811
):
    """Redis gone (nothing on its port): the edge still acknowledges each event, once it is
    in the edge's outbox file, and keeps it there through its own stop. Started again with
    Redis there, it sends them; the ledger writer appends each once and confirms them, the
    edge forgets them, and the stream keeps nothing."""
    from server.cluster.outbox import StreamLedger
    from server.cluster.stream import APPLIED, STREAM, StreamWriter
    from tests.test_cli import free_port

    outbox = tmp_path / "edge" / "outbox.sqlite3"
    gone = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    edge = StreamLedger(gone, "B/1", outbox)
    edge.start()
    for frames in range(1, 6):
        done = await asyncio.wait_for(edge.submit("s1", _heartbeat(frames)), 5)
        assert done.at_ms > 0
    await until(lambda: edge.failing_since is not None)  # it tried; Redis was not there
    assert edge.backlog == 5 and edge.sent == 0
    await edge.aclose(timeout=0.5)
    await gone.aclose()

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    writer = StreamWriter(redis, ledger)
    running = asyncio.ensure_future(writer.run())
    again = StreamLedger(redis, "B/2", outbox)  # the edge started again
    try:
        assert again.backlog == 5
        again.start()
        await again.submit("s1", _heartbeat(6))
        await until(lambda: again.backlog == 0)
        assert _frames(ledger, "s1") == [1, 2, 3, 4, 5, 6]
        assert int(await redis.hget(APPLIED, again.box)) == 6
        assert await redis.xlen(STREAM) == 0  # applied entries leave the stream
        assert again.resent == 0
    finally:
        await _close(again, ledger, redis, writer, running)


async def test_events_redis_lost_are_sent_again_and_appended_once(
    tmp_path,
    redis_url,  # noqa: F811
    monkeypatch,
):
    """Redis restarted without persistence while the ledger writer was down: the stream, the
    group and the writer's confirmations are gone. The edge still has every unconfirmed event
    on disk; when confirmation stalls and its last entry is no longer in the stream, it sends
    them again, and the ledger ends with each event exactly once."""
    from server.cluster import outbox, stream

    monkeypatch.setattr(outbox, "RESEND_AFTER_S", 0.3)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    edge = outbox.StreamLedger(redis, "B/1", tmp_path / "edge" / "outbox.sqlite3")
    edge.start()
    writer = running = None
    try:
        # the writer confirms the first two, then is down for the next four
        writer = stream.StreamWriter(redis, ledger)
        running = asyncio.ensure_future(writer.run())
        for frames in (1, 2):
            await edge.submit("s1", _heartbeat(frames))
        await until(lambda: edge.confirmed == 2)
        writer.stop()
        await asyncio.wait({running}, timeout=5)
        for frames in (3, 4, 5, 6):
            await edge.submit("s1", _heartbeat(frames))

        async def in_stream() -> bool:
            return await redis.xlen(stream.STREAM) == 4

        await until(in_stream, timeout=10)
        await redis.flushall()  # what a restart without persistence leaves
        await edge.submit("s1", _heartbeat(7))
        writer = stream.StreamWriter(redis, ledger)
        running = asyncio.ensure_future(writer.run())
        await until(lambda: edge.backlog == 0, timeout=15)
        assert _frames(ledger, "s1") == [1, 2, 3, 4, 5, 6, 7]  # each once, in the edge's order
        assert edge.resent >= 4  # 3-6 at least; 7 too if it came before the writer read it
    finally:
        await _close(edge, ledger, redis, writer, running)


async def test_a_stopped_ledger_writer_ends_within_seconds_whenever_it_is_told(
    tmp_path,
    redis_url,  # noqa: F811
):
    """A stop lands anywhere: reading the stream, or inside the reaper's Redis calls, where a
    cancellation could be lost (a service stop then waited for ever)."""
    from server.cluster.stream import StreamWriter

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        for wait in (0.1, 0.5, 0.95, 1.0, 1.05, 1.5, 2.02):  # around the reaper's turns
            writer = StreamWriter(redis, ledger)
            running = asyncio.ensure_future(writer.run())
            await asyncio.sleep(wait)
            writer.stop()
            done, _ = await asyncio.wait({running}, timeout=5)
            assert done, f"told to stop {wait} s in, the writer went on"
    finally:
        ledger.close()
        await redis.aclose()


async def test_an_unreadable_outbox_entry_is_skipped_and_does_not_hold_its_edge_back(
    tmp_path,
    redis_url,  # noqa: F811
):
    """An entry the writer cannot read is logged and counted as handled: the edge's next rows
    go in, and its mark moves past it (else the edge would send it again for ever)."""
    from server.cluster.stream import APPLIED, ENTRY, STREAM, StreamWriter, entry_text

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    beat = json.dumps(_heartbeat(2).data())
    await redis.xadd(STREAM, {ENTRY: entry_text("bx", 1, 0, "s1", "no-such-kind", 1, "B/1", "{}")})
    await redis.xadd(STREAM, {ENTRY: entry_text("bx", 2, 0, "s1", "heartbeat", 2, "B/1", beat)})
    writer = StreamWriter(redis, ledger)
    running = asyncio.ensure_future(writer.run())
    try:
        await until(lambda: writer.applied == 1)
        assert _frames(ledger, "s1") == [2]
        assert await redis.hget(APPLIED, "bx") == "2"
    finally:
        writer.stop()
        await asyncio.wait({running}, timeout=5)
        ledger.close()
        await redis.aclose()
