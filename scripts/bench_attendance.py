#!/usr/bin/env python3
"""Attendance benchmark: 4,000 participants on a compressed timeline through the real HTTP API,
then the full report, and the 30,000-row roster import.

What is real: the aiohttp application (create_app), its routes, tokens, the ledger (SQLite,
synchronous=FULL, group commit), the report and the CLI import. What stands in: the media
plane. 4,000 WebRTC peers do not fit on a 2-core machine beside the server, so each participant's
connection is a stand-in registered in the session as the media plane would register it (a
``viewer_connected`` event), whose receiver reports advance while it "watches". The stand-ins
are created through a bench-only route (``/bench/join``) that exists in this script only.

    .venv/bin/python scripts/bench_attendance.py [--participants 4000] [--rounds 8]
        [--interval 1.0] [--heartbeats ws|http]

Last line:
  attendance: N participants, E events, R events/s, p99 ack X ms, report Y s, roster Z s, lost L
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from media.session import MediaEvent  # noqa: E402
from server.app import create_app  # noqa: E402
from server.config import Config  # noqa: E402
from server.routes.whip import identity_of  # noqa: E402
from server.state import STATE  # noqa: E402
from server.store import TOWNSHIPS, Member  # noqa: E402

SECRET = b"bench-secret-bench-secret"


class StandInTrack:
    def __init__(self) -> None:
        self.rr = None


class StandInViewer:
    """A viewer connection without WebRTC: what SessionMedia needs of one, nothing more."""

    def __init__(self, media, peer_id: str) -> None:
        self.id = peer_id
        self.media = media
        self.tracks = {"video": (None, StandInTrack()), "audio": (None, StandInTrack())}
        self.closed = False
        self.close_reason = ""
        self.connected_hook = None
        self.seq = random.randrange(60000)

    def advance(self, now: float) -> None:
        self.seq += 48
        for _, track in self.tracks.values():
            track.rr = (self.seq, 0, 0, 0, now)

    def receiver_highest(self) -> dict[str, int]:
        return {kind: dt.rr[0] for kind, (_, dt) in self.tracks.items() if dt.rr is not None}

    def quality(self) -> dict:
        return {"audio_only": False, "layer": "high"}

    async def close(self, reason: str = "delete") -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.media._peer_gone(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_server(data: Path, port: int, ready: asyncio.Event, stop: asyncio.Event) -> dict:
    config = Config(
        port=port,
        data_dir=data,
        ledger_key=data.parent / "ledger.pem",
        secret=SECRET.decode(),
        heartbeat_timeout_s=0,
    )
    app = create_app(config)
    state = app[STATE]
    standins: list[StandInViewer] = []

    async def bench_join(request: web.Request) -> web.Response:
        sid = request.match_info["session"]
        token = request.headers["Authorization"][7:]
        claims = state.signer.verify(token)
        media = state.live.get(sid)
        viewer = StandInViewer(media, os.urandom(9).hex())
        viewer.advance(time.monotonic())
        standins.append(viewer)
        media.viewers[viewer.id] = viewer
        media.identities[viewer.id] = identity_of(claims, request.remote or "", False)
        media._listener(MediaEvent("viewer_connected", sid, viewer.id, media.identities[viewer.id]))
        return web.Response(status=201, headers={"Location": f"/whep/{sid}/{viewer.id}"})

    app.router.add_post("/bench/join/{session}", bench_join)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def advance() -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for v in standins:
                if not v.closed:
                    v.advance(now)

    ticker = asyncio.ensure_future(advance())
    ready.set()
    await stop.wait()
    ticker.cancel()
    stats = {
        "appended": state.attendance.ledger.appended,
        "batches": state.attendance.ledger.batches,
    }
    await runner.cleanup()
    return stats


async def participant(
    http, url, sid, token, rounds, interval, reconnect, acks, errors, ws, start_after
):
    """One member: join (``start_after`` seconds in), heartbeats (over the page's WebSocket,
    or one POST each with ``ws`` false), leave; a reconnecting one does it twice."""
    auth = {"Authorization": f"Bearer {token}"}
    await asyncio.sleep(start_after)
    for attempt in range(2 if reconnect else 1):
        async with http.post(f"{url}/bench/join/{sid}", headers=auth) as resp:
            location = resp.headers["Location"]
        frames = 0
        n = (
            rounds // 2
            if reconnect and attempt == 0
            else rounds - (rounds // 2 if reconnect else 0)
        )
        sock = await http.ws_connect(f"{url}{location}/heartbeats", headers=auth) if ws else None
        for _ in range(n):
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            frames += 25
            beat = {"frames_decoded": frames, "audio_playing": True, "visible": True}
            t0 = time.perf_counter()
            if sock is not None:
                await sock.send_json(beat)
                answer = await sock.receive_json()
                if "seq" in answer:
                    acks.append((time.perf_counter() - t0, answer["seq"]))
                else:
                    errors.append(answer.get("status", 0))
                continue
            async with http.post(f"{url}{location}/heartbeat", json=beat, headers=auth) as resp:
                if resp.status == 200:
                    acks.append((time.perf_counter() - t0, (await resp.json())["seq"]))
                else:
                    errors.append(resp.status)
        if sock is not None:
            await sock.close()
        async with http.delete(f"{url}{location}", headers=auth) as resp:
            if resp.status != 200:
                errors.append(resp.status)


async def bench(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lr-att-"))
    data = tmp / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.ensure_future(run_server(data, port, ready, stop))
    await ready.wait()
    # a session and the members' tokens, as `session create` and `links` would issue them
    from server.auth import TokenSigner
    from server.store import Store

    store = Store(data / "relay.sqlite3")
    session = store.create_session("基准测试", TOWNSHIPS)
    store.upsert_members(
        [Member(f"B{i:05d}", f"党员{i}", TOWNSHIPS[i % 15]) for i in range(args.participants)]
    )
    store.close()
    signer = TokenSigner(SECRET)
    sid = session.id
    lecturer = signer.issue("lecturer", sid, "lecturer", 3600)
    admin = signer.issue("admin", None, "bench", 3600)

    # the participants run in other processes, as phones would
    per = [
        args.participants // args.procs + (i < args.participants % args.procs)
        for i in range(args.procs)
    ]
    first = 0
    procs = []
    for count in per:
        spec = json.dumps(
            {
                "url": url,
                "sid": sid,
                "first": first,
                "count": count,
                "rounds": args.rounds,
                "interval": args.interval,
                "connections": args.connections,
                "heartbeats": args.heartbeats,
                "ramp": args.ramp,
            }
        )
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "_clients", spec, stdout=asyncio.subprocess.PIPE
            )
        )
        first += count
    started, cpu0 = time.perf_counter(), time.process_time()
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    elapsed, server_cpu = time.perf_counter() - started, time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    clients_cpu = children.ru_utime + children.ru_stime  # the roster import comes later
    acks: list[tuple[float, int]] = []
    errors: list[int] = []
    for out, _ in outputs:
        result = json.loads(out)
        acks.extend(result["acks"])
        errors.extend(result["errors"])
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        async with http.post(
            f"{url}/api/sessions/{sid}/end", headers={"Authorization": f"Bearer {lecturer}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(
            f"{url}/api/sessions/{sid}/attendance?format=csv",
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            report = await resp.read()
        report_s = time.perf_counter() - t0
        async with http.get(
            f"{url}/api/sessions/{sid}/verify", headers={"Authorization": f"Bearer {admin}"}
        ) as resp:
            verdict = await resp.json()
    stop.set()
    stats = await server

    # every acknowledged sequence number is in the ledger
    from server.attendance.ledger import Ledger

    ledger = Ledger(data / "ledger.sqlite3")
    seqs = {r.seq for r in ledger.rows(sid)}
    events = len(seqs)
    ledger.close()
    lost = sum(1 for _, seq in acks if seq not in seqs)
    lat = sorted(a for a, _ in acks)
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    if lat:
        marks = ", ".join(f"p{q} {lat[int(len(lat) * q / 100) - 1] * 1000:.1f}" for q in (50, 90))
        print(f"heartbeat acks: {marks}, p99 {p99:.1f}, max {lat[-1] * 1000:.1f} ms", flush=True)
    rate = stats["appended"] / elapsed
    rows = report.decode("utf-8-sig").count("\n") - 3
    print(
        f"ledger: {stats['appended']} appends in {stats['batches']} commits, "
        f"{len(errors)} HTTP errors, verify {'ok' if verdict['ok'] else 'FAILED'}, "
        f"report rows {rows}",
        flush=True,
    )
    # The server's own CPU per event (this process: the app and its ledger thread), which
    # the load generator's share of the cores does not change: what one core could carry.
    per_event = server_cpu / max(stats["appended"], 1)
    print(
        f"server: {server_cpu:.1f} s CPU for {stats['appended']} events over {elapsed:.1f} s, "
        f"{per_event * 1e6:.0f} us per event, {1 / per_event:.0f} events/s per core; "
        f"the load generator {clients_cpu:.1f} s CPU ({clients_cpu / elapsed * 100:.0f}% "
        f"of a core)",
        flush=True,
    )

    roster_s = roster_import(tmp, args.roster)
    print(
        f"attendance: {args.participants} participants, {events} events, {rate:.0f} events/s, "
        f"p99 ack {p99:.1f} ms, report {report_s:.2f} s, roster {roster_s:.1f} s, lost {lost}"
    )
    if errors or lost or not verdict["ok"]:
        sys.exit(1)  # a run with refused requests measured something else


async def run_clients(spec: dict) -> None:
    """Child process: ``count`` participants from ``first`` on; prints acks and errors."""
    from server.auth import TokenSigner

    signer = TokenSigner(SECRET)
    acks: list[tuple[float, int]] = []
    errors: list[int] = []
    # Over WebSockets each participant holds its own connection, as each phone does.
    ws = spec["heartbeats"] == "ws"
    connector = aiohttp.TCPConnector(limit=0 if ws else spec["connections"])
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(
            *(
                participant(
                    http,
                    spec["url"],
                    spec["sid"],
                    signer.issue("member", spec["sid"], f"B{i:05d}", 3600),
                    spec["rounds"],
                    spec["interval"],
                    i % 10 == 0,
                    acks,
                    errors,
                    ws,
                    # members arrive over the ramp, as they do before a lecture
                    random.uniform(0, spec["ramp"]),
                )
                for i in range(spec["first"], spec["first"] + spec["count"])
            )
        )
    print(json.dumps({"acks": acks, "errors": errors}))


def roster_import(tmp: Path, rows: int) -> float:
    path = tmp / "roster.csv"
    rng = random.Random(1)
    cats = ["流动党员", "老年", "居家", "其他"]
    with path.open("w", encoding="utf-8-sig") as f:
        f.write("党员编号,姓名,乡镇,手机,类别\n")
        for i in range(rows):
            f.write(
                f"R{i:06d},党员{i},{TOWNSHIPS[i % 15]},1{rng.randrange(3, 9)}{i:09d},"
                f"{cats[i % 4]}\n"
            )
    env = {**os.environ, "LR_DATA": str(tmp / "roster-data"), "LR_LEDGER_KEY": str(tmp / "k.pem")}
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(ROOT / ".venv/bin/lecture-relay"), "roster", "import", str(path)],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t0
    print(out.stdout.strip(), flush=True)
    return took


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_clients":
        asyncio.run(run_clients(json.loads(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8, help="heartbeats per participant")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between them")
    parser.add_argument(
        "--ramp", type=float, default=4.0, help="seconds over which the participants join"
    )
    parser.add_argument(
        "--connections", type=int, default=100, help="HTTP connections each (POST heartbeats)"
    )
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--heartbeats",
        choices=["ws", "http"],
        default="ws",
        help="over each page's WebSocket (as the pages send them) or one POST each",
    )
    parser.add_argument("--roster", type=int, default=30000)
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
