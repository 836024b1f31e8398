#!/usr/bin/env python3
"""Attendance benchmark: 4,000 participants on a compressed timeline through the real HTTP API,
then the full report, and the 30,000-row roster import.

What is real: the aiohttp application (create_app), its routes, tokens, the ledger (SQLite,
synchronous=FULL, group commit), the report and the CLI import. What stands in: the media
plane. 4,000 WebRTC peers do not fit on a 2-core machine beside the server, so each participant's
connection is a stand-in registered in the session as the media plane would register it (a
``viewer_connected`` event), whose receiver reports advance while it "watches". The stand-ins
are created through a bench-only route (``/bench/join``) that exists in this script only, and
the lecturer's media is announced the same way (``/bench/start``).

The load generator (two processes on the same cores, at a lower priority than the relay:
``--generator-nice``) speaks HTTP/1.1 and WebSocket itself over plain asyncio sockets, with
one timer for all of a process's heartbeats: aiohttp's client cost as much CPU per heartbeat
as the relay did. An ack's time runs from the heartbeat's send to the ack reaching the member's
socket, by the kernel's receive timestamp (``SO_TIMESTAMPNS``; over ``--heartbeats http``, to
aiohttp's reading it): how late the niced generator got round to reading it is printed beside
it. First, the same load goes through a bare
aiohttp application that answers every join, heartbeat and leave at once (no tokens, no
ledger, no disk): the floor of this stack on this machine, measured in the same run.

    .venv/bin/python scripts/bench_attendance.py [--participants 4000] [--rounds 48]
        [--interval 0.6] [--ramp 4] [--heartbeats ws|http] [--no-floor] [--generator-nice 10]
        [--stay] [--timeline]

By default members leave (a DELETE each, over ~4 s at the end) before the lecture ends; with
``--stay`` they are all still watching when the lecturer ends it, as at most lectures' end: the
end then closes every connection and appends every leave before it answers, and the report's
time includes that.

The default timeline offers ~6,700 events a second once all have joined (the target is
5,000); ``--interval 1 --rounds 8`` is the lighter one earlier sessions' tables call
"default".

Last line:
  attendance: N participants, E events, R events/s, p99 ack X ms, report Y s, roster Z s, lost L

``--checks [--answer-spread 30]``: a roll call (点名) instead, every member answering within
its 90 s window; last line:
  rollcall: N members, A answers, p99 ack X ms, counted C, lost L
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import heapq
import json
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import aiohttp  # noqa: E402

from media.remote import RemoteViewer  # noqa: E402 - asyncio and logging, nothing more

# The relay's other modules (aiortc and PyAV among them) are imported where the server starts,
# not here: the load generator's processes import this file too, and need none of them.

SECRET = b"bench-secret-bench-secret"


class StandInViewer(RemoteViewer):
    """A viewer connection without WebRTC, joined to the media plane as one another process
    serves (what a media worker reports of its viewers, the bench reports itself): its media
    "arrives" every quarter second, its receiver reports advancing with it."""

    def __init__(self, media, peer_id: str) -> None:
        super().__init__(
            peer_id, -1, False, media.remote_gone, self._nothing_there, self._nothing_to_switch
        )
        self.seq = random.randrange(60000)

    def advance(self) -> None:
        self.seq += 48
        self.report({"video": self.seq, "audio": self.seq}, QUALITY)

    @staticmethod
    async def _nothing_there(resource: str, reason: str) -> None:
        """No process serves it: nothing to stop there."""

    @staticmethod
    async def _nothing_to_switch(resource: str, audio_only: bool) -> None:
        """No process serves it: nothing to switch there."""


QUALITY = {"audio_only": False, "layer": "high"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_server(
    data: Path, port: int, ready: asyncio.Event, stop: asyncio.Event, args: argparse.Namespace
) -> dict:
    from aiohttp import web

    from media.session import MediaEvent
    from server.app import create_app
    from server.config import Config
    from server.routes.whip import Owner, identity_of
    from server.runtime import pace_gc, tune_gc
    from server.state import STATE

    config = Config(
        port=port,
        data_dir=data,
        ledger_key=data.parent / "ledger.pem",
        secret=SECRET.decode(),
        heartbeat_timeout_s=0,
        ledger_commit_interval_s=args.commit_interval,
        checkpoint_interval_s=args.checkpoint_interval,
        gc_pace_s=args.gc_pace,
        # its pages beat every --interval (+-20%), faster than a real page's 10 s
        heartbeat_min_gap_s=args.interval * 0.4,
    )
    app = create_app(config)
    state = app[STATE]
    if state.attendance.ledger.writer_pid is not None:
        HELPER_PIDS.append(state.attendance.ledger.writer_pid)
    standins: list[StandInViewer] = []

    async def bench_join(request: web.Request) -> web.Response:
        sid = request.match_info["session"]
        token = request.headers["Authorization"][7:]
        claims = state.signer.verify(token)
        media = state.live.get(sid)
        viewer = StandInViewer(media, os.urandom(9).hex())
        viewer.advance()
        standins.append(viewer)
        media.add_remote(viewer, identity_of(claims, request.remote or "", False))
        media.owners[viewer.id] = Owner.of(request, claims)  # its DELETE is the member's
        media.remote_connected(viewer.id)  # media reached it: its join
        return web.Response(status=201, headers={"Location": f"/whep/{sid}/{viewer.id}"})

    async def bench_start(request: web.Request) -> web.Response:
        """The lecturer's media first flowing, as the media plane reports it: the session is
        live from here (its start in the ledger; its report kept up to date meanwhile)."""
        sid = request.match_info["session"]
        media = state.live.get(sid)
        media._listener(MediaEvent("publisher_connected", sid, "lecturer-standin"))
        media.media_flowing.set()  # its members join as they connect (no ticker runs here)
        return web.Response(status=204)

    app.router.add_post("/bench/join/{session}", bench_join)
    app.router.add_post("/bench/start/{session}", bench_start)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def advance() -> None:
        while True:
            await asyncio.sleep(0.25)
            for v in standins:
                if not v.closed:
                    v.advance()

    ticker = asyncio.ensure_future(advance())
    tune_gc()  # as `serve` does once it is up (the floor, run in this process, gets it too)
    pacer = asyncio.ensure_future(pace_gc(config.gc_pace_s))
    gc.callbacks.append(GC_PAUSES)
    ready.set()
    await stop.wait()
    ticker.cancel()
    pacer.cancel()
    stats = {
        "appended": state.attendance.ledger.appended,
        "batches": state.attendance.ledger.batches,
    }
    await runner.cleanup()
    return stats


class HeartbeatSocket(asyncio.Protocol):
    """A lean WebSocket client for the load generator: a page's heartbeat socket and no more
    (masked text frames out, the server's unmasked frames in, pings answered). aiohttp's
    client cost as much CPU per heartbeat as the relay did, on the same two cores."""

    def __init__(self) -> None:
        self.transport: StampedWire | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.response: asyncio.Future | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.mask = os.urandom(4)

    @classmethod
    async def connect(cls, url: str) -> HeartbeatSocket:
        host, port = url.removeprefix("http://").split(":")
        loop = asyncio.get_running_loop()
        raw = socket.socket()
        raw.setblocking(False)
        raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            await loop.sock_connect(raw, (host, int(port)))
        except BaseException:
            raw.close()
            raise
        sock = cls()
        sock.host = f"{host}:{port}"
        sock.connection_made(StampedWire(loop, raw, sock))
        return sock

    async def request(self, method: str, path: str, token: str, extra: str = "") -> tuple:
        """One HTTP/1.1 request on this connection: (status, headers, body)."""
        self.response = asyncio.get_running_loop().create_future()
        self.transport.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n{extra}\r\n".encode()
        )
        return await self.response

    async def upgrade(self, path: str, token: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        status, _, _ = await self.request(
            "GET",
            path,
            token,
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        )
        if status != 101:
            raise RuntimeError(f"the heartbeat socket was refused: {status}")
        self.upgraded = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def frame(self, opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        head = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else bytes([0x80 | opcode, 0xFE])
        if n >= 126:
            head += n.to_bytes(2, "big")
        key = (self.mask * (n // 4 + 1))[:n]
        body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return head + self.mask + body

    def beats(self, clock: Clock, n: int, interval: float, acks: list, errors: list):
        """Send ``n`` heartbeats ``interval`` (±20%) apart, each after the last one's answer,
        from ``clock``'s one timer rather than a task per member; a future for the last."""
        self.clock, self.left, self.interval = clock, n, interval
        self.acks, self.errors, self.frames = acks, errors, 0
        self.finished = asyncio.get_running_loop().create_future()
        clock.at(time.perf_counter() + interval * random.uniform(0.8, 1.2), self)
        return self.finished

    def beat(self) -> None:
        self.frames += 25
        beat = {"frames_decoded": self.frames, "audio_playing": True, "visible": True}
        self.sent, self.sent_wall = time.perf_counter(), time.time()
        self.transport.write(self.frame(0x1, json.dumps(beat).encode()))

    def answered(self, payload: bytes) -> None:
        now = time.perf_counter()
        answer = json.loads(payload)
        if "seq" in answer:
            on_wire = self.transport.stamp - self.sent_wall
            self.acks.append((on_wire, answer["seq"], self.sent - STARTED, now - self.sent))
        else:
            self.errors.append(answer.get("status", 0))
        self.left -= 1
        if self.left > 0:
            self.clock.at(now + self.interval * random.uniform(0.8, 1.2), self)
        elif not self.finished.done():
            self.finished.set_result(None)

    async def close(self) -> None:
        if not self.closed.done():
            self.transport.write(self.frame(0x8, (1000).to_bytes(2, "big")))
            await asyncio.wait_for(self.closed, 10)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            self._http_response()
            if not self.upgraded:
                return
        buf = self.buffer
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[at : at + n])
            del buf[: at + n]
            if opcode == 0x1:
                self.answered(payload)
            elif opcode == 0x9:
                self.transport.write(self.frame(0xA, payload))
            elif opcode == 0x8 and not self.closed.done():
                self.closed.set_result(None)

    def _http_response(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.response is None or self.response.done():
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:])
        status = int(head[0].split()[1])
        length = 0 if status == 101 else int(headers.get("Content-Length", "0"))
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.upgraded = status == 101
        self.response.set_result((status, headers, body))

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for future in (self.response, getattr(self, "finished", None)):
            if future is None:
                continue
            if not future.done():
                future.set_exception(ConnectionError("the relay closed the heartbeat socket"))


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's; not in Python's socket


class StampedWire:
    """The write/close half of a transport for one of the load generator's sockets, which
    reads with ``recvmsg`` so that each read carries the kernel's receive time
    (``SO_TIMESTAMPNS``). An ack's time is taken from there, when it reached the member's
    socket: the generator shares the relay's two cores at a lower priority, and how late it
    got round to reading an ack is its own delay, which a phone's CPU would not add."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol) -> None:
        self.loop, self.sock, self.protocol = loop, sock, protocol
        self.pending = b""
        self.stamp = 0.0  # the last read's receive time (time.time()'s clock)
        self.closed = False
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(1 << 18, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.close()
            return
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", raw[:16])
                self.stamp = seconds + nanoseconds / 1e9
        self.protocol.data_received(data)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.pending:
            try:
                data = data[self.sock.send(data) :]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.close()
                return
            if data:
                self.loop.add_writer(self.sock.fileno(), self._writable)
        self.pending += data

    def _writable(self) -> None:
        try:
            self.pending = self.pending[self.sock.send(self.pending) :]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not self.pending:
            self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.loop.call_soon(self.protocol.connection_lost, None)


class Clock:
    """One timer for all of a load-generator process's heartbeats (a heap of due times)."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, HeartbeatSocket]] = []
        self.count = 0

    def at(self, when: float, sock: HeartbeatSocket) -> None:
        self.count += 1
        heapq.heappush(self.heap, (when, self.count, sock))

    async def run(self) -> None:
        while True:
            now = time.perf_counter()
            while self.heap and self.heap[0][0] <= now:
                heapq.heappop(self.heap)[2].beat()
            await asyncio.sleep(0.002)


class Stay:
    """``--stay``: members still watching when the lecture ends. Each one's last heartbeat
    answered, the process says so on its output (``beaten``), once for all of them; the bench
    then ends the session, which closes every socket, and each member's ends with it."""

    def __init__(self, count: int) -> None:
        self.left = count

    async def watch(self, sock: HeartbeatSocket) -> None:
        self.left -= 1
        if self.left == 0:
            print("beaten", flush=True)
        try:
            await asyncio.wait_for(asyncio.shield(sock.closed), STAY_TIMEOUT_S)
        finally:
            sock.transport.close()


STAY_TIMEOUT_S = 120.0  # bounded: a lecture that never ends still lets the run stop


async def participant(
    http,
    url,
    sid,
    token,
    rounds,
    interval,
    reconnect,
    acks,
    errors,
    ws,
    start_after,
    clock,
    stay=None,
):
    """One member: join (``start_after`` seconds in), heartbeats (over the page's WebSocket,
    or one POST each with ``ws`` false), leave; a reconnecting one does it twice. With
    ``stay`` (a ``Stay``), the member is still watching after their last heartbeat, until
    the lecture's end closes their socket."""
    auth = {"Authorization": f"Bearer {token}"}
    await asyncio.sleep(start_after)
    attempts = 2 if reconnect else 1
    for attempt in range(attempts):
        sock = None
        if ws:  # the join, then the socket on the same connection
            sock = await HeartbeatSocket.connect(url)
            status, headers, _ = await sock.request("POST", f"/bench/join/{sid}", token)
            location = headers["Location"]
            await sock.upgrade(f"{location}/heartbeats", token)
        else:
            async with http.post(f"{url}/bench/join/{sid}", headers=auth) as resp:
                location = resp.headers["Location"]
        frames = 0
        n = (
            rounds // 2
            if reconnect and attempt == 0
            else rounds - (rounds // 2 if reconnect else 0)
        )
        if sock is not None:
            await sock.beats(clock, n, interval, acks, errors)
            if stay is not None and attempt == attempts - 1:
                await stay.watch(sock)
                continue
        for _ in range(n if sock is None else 0):
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            frames += 25
            beat = {"frames_decoded": frames, "audio_playing": True, "visible": True}
            t0 = time.perf_counter()
            async with http.post(f"{url}{location}/heartbeat", json=beat, headers=auth) as resp:
                if resp.status == 200:
                    seq = (await resp.json())["seq"]
                    took = time.perf_counter() - t0  # no receive time from aiohttp's socket
                    acks.append((took, seq, t0 - STARTED, took))
                else:
                    errors.append(resp.status)
        if sock is not None:
            await sock.close()
            done = await HeartbeatSocket.connect(url)
            status, _, _ = await done.request("DELETE", location, token, "Connection: close\r\n")
            done.transport.close()
            if status != 200:
                errors.append(status)
            continue
        async with http.delete(f"{url}{location}", headers=auth) as resp:
            if resp.status != 200:
                errors.append(resp.status)


async def drive(args, url: str, sid: str, end=None) -> tuple:
    """Run the participants (in other processes, as phones would) against ``url``; returns
    their processes' output (``collect`` reads it), seconds, this process's CPU seconds, the
    load generator's CPU seconds. With ``--stay``, ``end()`` is awaited once every process
    has had its last heartbeat answered (its members still watching)."""
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
                "nice": args.generator_nice,
                "stay": args.stay,
            }
        )
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "_clients", spec, stdout=asyncio.subprocess.PIPE
            )
        )
        first += count
    from benchlib import cpu_seconds

    def server_cpu_now() -> float:  # this process and the relay's ledger writer
        return time.process_time() + sum(cpu_seconds(pid) for pid in HELPER_PIDS)

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, cpu0 = time.perf_counter(), server_cpu_now()
    if args.stay:
        for p in procs:  # each says "beaten" once its members' heartbeats are all answered
            while (line := await p.stdout.readline()) and line != b"beaten\n":
                pass
        await end()
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    elapsed, server_cpu = time.perf_counter() - started, server_cpu_now() - cpu0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clients_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return [out for out, _ in outputs], elapsed, server_cpu, clients_cpu


def collect(
    outputs: list[bytes],
) -> tuple[list[tuple[float, int, float, float]], list[int], float]:
    """The load generator's acks and errors, from its processes' output, and when its first
    process started (its acks' send times count from there). (Read after the relay's
    /metrics: on this process's event loop, the relay's, it takes ~0.2 s.)"""
    acks: list[tuple[float, int, float, float]] = []
    errors: list[int] = []
    started = []
    for out in outputs:
        result = json.loads(out)
        acks.extend(result["acks"])
        errors.extend(result["errors"])
        started.append(result["started"])
    return acks, errors, min(started)


async def run_floor(args, sid: str) -> dict:
    """The same participants and timeline against a bare aiohttp application that answers
    every join, heartbeat and leave at once (no token, no ledger, no disk): what aiohttp and
    this box's loopback cost before the relay does any work of its own."""
    from aiohttp import web

    count = 0
    sockets: set[web.WebSocketResponse] = set()

    async def join(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        peer = os.urandom(9).hex()
        return web.Response(status=201, headers={"Location": f"/whep/{sid}/{peer}"})

    async def beats(request: web.Request) -> web.WebSocketResponse:
        nonlocal count
        ws = web.WebSocketResponse()  # as the relay's: no ping timer
        await ws.prepare(request)
        sockets.add(ws)
        async for msg in ws:
            json.loads(msg.data)
            count += 1
            await ws.send_json({"seq": count, "layer": "high"})
        sockets.discard(ws)
        return ws

    async def end() -> None:
        """``--stay``: the lecture's end, as the floor has one: every socket closed."""
        await asyncio.gather(*(ws.close() for ws in list(sockets)))

    async def beat(request: web.Request) -> web.Response:
        nonlocal count
        await request.json()
        count += 1
        return web.json_response({"seq": count, "layer": "high"})

    async def leave(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/bench/join/{session}", join)
    app.router.add_get("/whep/{session}/{peer}/heartbeats", beats)
    app.router.add_post("/whep/{session}/{peer}/heartbeat", beat)
    app.router.add_delete("/whep/{session}/{peer}", leave)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        outputs, elapsed, cpu, clients = await drive(args, f"http://127.0.0.1:{port}", sid, end)
    finally:
        await runner.cleanup()
    acks, errors, _ = collect(outputs)
    lat = sorted(a for a, *_ in acks)
    steady = sorted(a for a, _, at, _ in acks if at > args.ramp + args.interval * 1.2) or [0.0]
    floor = {
        "events": count,
        "rate": count / elapsed,
        "p99_ms": percentile(lat, 99) * 1000 if lat else float("nan"),
        "us_per_event": cpu / max(count, 1) * 1e6,
        "clients_cpu": clients,
        "elapsed": elapsed,
    }
    print(
        f"floor (bare aiohttp, same load): {count} events, {floor['rate']:.0f} events/s, "
        f"p99 ack {floor['p99_ms']:.1f} ms (once all have joined "
        f"{percentile(steady, 99) * 1000:.1f}; read by the generator "
        f"{percentile(sorted(r for *_, r in acks), 99) * 1000:.1f}), "
        f"{floor['us_per_event']:.0f} us CPU per event, "
        f"the load generator {clients / elapsed * 100:.0f}% of a core, {len(errors)} errors",
        flush=True,
    )
    return floor


async def serve_a_lecture(args, prefix: str, title: str) -> tuple:
    """The relay serving in this process, on a scratch data directory, with a lecture and
    ``--participants`` members on the roster (as `session create` and `roster import` make
    them): (the scratch directory, the URL, the stop event, the server's task, the id)."""
    from benchlib import scratch_dir  # imports aiortc: not in the load generator's processes

    tmp = scratch_dir(prefix)
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.ensure_future(run_server(tmp / "data", port, ready, stop, args))
    await ready.wait()
    from server.store import TOWNSHIPS, Member, Store

    store = Store(tmp / "data" / "relay.sqlite3")
    sid = store.create_session(title).id
    store.upsert_members(
        [Member(f"B{i:05d}", f"党员{i}", TOWNSHIPS[i % 15]) for i in range(args.participants)]
    )
    store.close()
    return tmp, f"http://127.0.0.1:{port}", stop, server, sid


async def bench(args) -> None:
    tmp, url, stop, server, sid = await serve_a_lecture(args, "lr-att-", "基准测试")
    data = tmp / "data"
    from server.auth import TokenSigner

    signer = TokenSigner(SECRET)
    lecturer = signer.issue("lecturer", sid, "lecturer", 3600)
    admin = signer.issue("admin", None, "bench", 3600)

    floor = None
    if args.floor:
        floor = await run_floor(args, sid)
    async with aiohttp.ClientSession() as http:  # the lecture begins
        async with http.get(f"{url}/metrics") as resp:  # what the set-up above left there
            before = await resp.text()
        async with http.post(f"{url}/bench/start/{sid}") as resp:
            assert resp.status == 204, await resp.text()
    GC_PAUSES.pauses = {0: [], 1: [], 2: []}  # the relay's own, not the floor's
    ending: dict = {}

    async def end() -> None:
        """The lecturer ends the lecture; the admin exports its attendance."""
        async with aiohttp.ClientSession() as http:
            t0 = time.perf_counter()
            async with http.post(
                f"{url}/api/sessions/{sid}/end", headers={"Authorization": f"Bearer {lecturer}"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            ended_s = time.perf_counter() - t0
            async with http.get(
                f"{url}/api/sessions/{sid}/attendance?format=csv",
                headers={"Authorization": f"Bearer {admin}"},
            ) as resp:
                ending["report"] = await resp.read()
            ending["report_s"] = time.perf_counter() - t0
        watching = f" with {args.participants} members watching" if args.stay else ""
        print(
            f"report: the session ended{watching} (its members credited) in {ended_s:.2f} s, "
            f"then the CSV export in {ending['report_s'] - ended_s:.2f} s",
            flush=True,
        )

    with Steal() as steal:
        outputs, elapsed, server_cpu, clients_cpu = await drive(args, url, sid, end)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as resp:  # what an operator would see
            waits = ledger_waits(before, await resp.text())
        acks, errors, generator_started = collect(outputs)
        if not args.stay:
            await end()
        report, report_s = ending["report"], ending["report_s"]
        async with http.get(
            f"{url}/api/sessions/{sid}/verify", headers={"Authorization": f"Bearer {admin}"}
        ) as resp:
            verdict = await resp.json()
    from benchlib import thread_cpu

    threads = thread_cpu()
    stop.set()
    stats = await server

    # every acknowledged sequence number is in the ledger
    from server.attendance.ledger import Ledger

    ledger = Ledger(data / "ledger.sqlite3")
    seqs, kinds = set(), {}
    for r in ledger.rows(sid):
        seqs.add(r.seq)
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    events = len(seqs)
    ledger.close()
    # every connection joined and left (a reconnecting member twice)
    connections = args.participants + len(range(0, args.participants, 10))
    whole = kinds.get("join") == kinds.get("leave") == connections
    lost = sum(1 for _, seq, *_ in acks if seq not in seqs)
    lat = sorted(a for a, *_ in acks)
    p99 = percentile(lat, 99) * 1000 if lat else float("nan")
    if lat:
        marks = ", ".join(f"p{q} {percentile(lat, q) * 1000:.1f}" for q in (50, 90))
        print(f"heartbeat acks: {marks}, p99 {p99:.1f}, max {lat[-1] * 1000:.1f} ms", flush=True)
        read = sorted(r for *_, r in acks)
        print(
            "  (from the heartbeat's send to its ack reaching the member's socket; to the load "
            f"generator reading it: p50 {percentile(read, 50) * 1000:.1f}, "
            f"p99 {percentile(read, 99) * 1000:.1f} ms)",
            flush=True,
        )
        # once every member has joined: the steady state, without the arrival surge
        steady = sorted(a for a, _, at, _ in acks if at > args.ramp + args.interval * 1.2)
        if steady:
            print(
                f"heartbeat acks once all have joined: {len(steady)}, "
                f"p50 {steady[len(steady) // 2] * 1000:.1f}, "
                f"p99 {percentile(steady, 99) * 1000:.1f} ms",
                flush=True,
            )
    print(waits, flush=True)
    print(steal.summary(), flush=True)
    if args.timeline:
        print_timeline(acks, steal.per_second(generator_started))
    rate = stats["appended"] / elapsed
    rows = report.decode("utf-8-sig").count("\n") - 3
    print(
        f"ledger: {stats['appended']} appends in {stats['batches']} commits, "
        f"{len(errors)} HTTP errors, verify {'ok' if verdict['ok'] else 'FAILED'}, "
        f"report rows {rows}; {kinds.get('join', 0)} joins, {kinds.get('leave', 0)} leaves, "
        f"{kinds.get('heartbeat', 0)} heartbeats",
        flush=True,
    )
    # The server's own CPU per event (this process, the app, and its ledger writer), which
    # the load generator's share of the cores does not change: what one core could carry.
    per_event = server_cpu / max(stats["appended"], 1)
    print(
        f"server: {server_cpu:.1f} s CPU for {stats['appended']} events over {elapsed:.1f} s, "
        f"{per_event * 1e6:.0f} us per event, {1 / per_event:.0f} events/s per core; "
        f"the load generator {clients_cpu:.1f} s CPU ({clients_cpu / elapsed * 100:.0f}% "
        f"of a core, nice {args.generator_nice})",
        flush=True,
    )
    if floor:
        print(
            f"relay against the bare-aiohttp floor: {per_event * 1e6 / floor['us_per_event']:.2f}x "
            f"CPU per event, {rate / floor['rate']:.2f}x events/s",
            flush=True,
        )

    print("relay threads: " + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in threads), flush=True)
    print(f"relay {GC_PAUSES.summary()}", flush=True)
    roster_s = roster_import(tmp, args.roster)
    print(
        f"attendance: {args.participants} participants, {events} events, {rate:.0f} events/s, "
        f"p99 ack {p99:.1f} ms, report {report_s:.2f} s, roster {roster_s:.1f} s, lost {lost}"
    )
    if errors or lost or not verdict["ok"] or not whole:
        sys.exit(1)  # a run with refused requests (or missing events) measured something else


async def bench_checks(args) -> None:
    """``--checks``: a roll call (点名) answered by every member within its window. Each member
    joins and beats once, the lecturer opens a 90 s call, every member answers at a random
    moment within ``--answer-spread`` seconds (then beats again, which vouches that media
    reached the connection at that moment), the lecture ends. Printed: the answers' ack
    times, how many the ledger holds and the report counts, lost ones (acked, not in it)."""
    tmp, url, stop, server, sid = await serve_a_lecture(args, "lr-rc-", "点名基准")
    data = tmp / "data"
    from server.auth import TokenSigner

    signer = TokenSigner(SECRET)
    lecturer = {"Authorization": f"Bearer {signer.issue('lecturer', sid, 'lecturer', 3600)}"}
    admin = {"Authorization": f"Bearer {signer.issue('admin', None, 'bench', 3600)}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/bench/start/{sid}") as resp:
            assert resp.status == 204, await resp.text()
    spec = {"url": url, "sid": sid, "count": args.participants, "spread": args.answer_spread,
            "nice": args.generator_nice}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "_answers", json.dumps(spec),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert (await proc.stdout.readline()) == b"joined\n"
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        async with http.post(
            f"{url}/api/sessions/{sid}/rollcalls", json={"window_s": 90}, headers=lecturer
        ) as resp:
            assert resp.status == 201, await resp.text()
            call = (await resp.json())["id"]
        proc.stdin.write(f"{call}\n".encode())
        await proc.stdin.drain()
        out, _ = await proc.communicate()
        answered_s = time.perf_counter() - t0
        result = json.loads(out)
        async with http.post(f"{url}/api/sessions/{sid}/end", headers=lecturer) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{url}/api/sessions/{sid}/audit", headers=admin) as resp:
            audit = await resp.json()
    stop.set()
    await server
    from server.attendance.ledger import Ledger

    ledger = Ledger(data / "ledger.sqlite3")
    answers = {r.seq: r.data["participant"] for r in ledger.rows(sid) if r.kind == "roll_answer"}
    ledger.close()
    acks = result["acks"]
    lost = sum(1 for _, seq in acks if seq not in answers)
    lat = sorted(a for a, _ in acks)
    p50, p99 = (percentile(lat, q) * 1000 if lat else float("nan") for q in (50, 99))
    counted = audit["rollcalls"][0]["answered"] if audit["rollcalls"] else 0
    print(
        f"answers: {len(acks)} acknowledged over {answered_s:.1f} s (spread {args.answer_spread} s"
        f" of a 90 s window), p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1] * 1000:.1f} ms;"
        f" {len(result['errors'])} HTTP errors; in the ledger {len(answers)}, counted by the"
        f" report {counted}",
        flush=True,
    )
    print(
        f"rollcall: {args.participants} members, {len(acks)} answers, p99 ack {p99:.1f} ms,"
        f" counted {counted}, lost {lost}"
    )
    if result["errors"] or lost or counted != args.participants:
        sys.exit(1)


async def run_answers(spec: dict) -> None:
    """The members of ``--checks`` (another process, niced: they stand for phones): join and
    beat, wait for the call's id on stdin, answer it at a random moment, beat again."""
    from server.auth import TokenSigner

    os.nice(spec["nice"])
    signer = TokenSigner(SECRET)
    url, sid = spec["url"], spec["sid"]
    acks: list[tuple[float, int]] = []
    errors: list[int] = []
    connector = aiohttp.TCPConnector(limit=200)
    beat = {"frames_decoded": 0, "audio_playing": True, "visible": True}
    async with aiohttp.ClientSession(connector=connector) as http:

        async def join(i: int) -> tuple[dict, str]:
            auth = {"Authorization": f"Bearer {signer.issue('member', sid, f'B{i:05d}', 3600)}"}
            async with http.post(f"{url}/bench/join/{sid}", headers=auth) as resp:
                location = resp.headers["Location"]
            async with http.post(f"{url}{location}/heartbeat", json=beat, headers=auth) as resp:
                if resp.status != 200:
                    errors.append(resp.status)
            return auth, location

        members = await asyncio.gather(*(join(i) for i in range(spec["count"])))
        print("joined", flush=True)
        call = (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()

        async def answer(auth: dict, location: str) -> None:
            await asyncio.sleep(random.uniform(0, spec["spread"]))
            body = {"resource": location.rsplit("/", 1)[1]}
            t0 = time.perf_counter()
            async with http.post(
                f"{url}/api/sessions/{sid}/rollcalls/{call}/answers", json=body, headers=auth
            ) as resp:
                if resp.status == 200:
                    acks.append((time.perf_counter() - t0, (await resp.json())["seq"]))
                else:
                    errors.append(resp.status)
            await asyncio.sleep(0.3)  # its next heartbeat: the relay saw media reach it then
            again = dict(beat, frames_decoded=25)
            async with http.post(f"{url}{location}/heartbeat", json=again, headers=auth) as resp:
                if resp.status != 200:
                    errors.append(resp.status)

        await asyncio.gather(*(answer(auth, location) for auth, location in members))
    print(json.dumps({"acks": acks, "errors": errors}))


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile of an ordered, non-empty list (nearest rank)."""
    return ordered[max(int(len(ordered) * q / 100) - 1, 0)]


def ledger_waits(before: str, after: str) -> str:
    """The relay's own account of where heartbeats waited during the run, from its
    ``/metrics`` histograms (``after`` less ``before``): each append until durable, each
    batch in the ledger writer (its fsync included), and how late the event loop ran."""

    def parse(metrics: str) -> dict[str, list[tuple[float, float]]]:
        buckets: dict[str, list[tuple[float, float]]] = {}
        for line in metrics.splitlines():
            name, _, rest = line.partition('_bucket{le="')
            if rest:
                le, _, value = rest.partition('"} ')
                buckets.setdefault(name, []).append((float(le), float(value)))
        return buckets

    start = parse(before)
    buckets = {
        name: [(le, n - dict(start.get(name, [])).get(le, 0.0)) for le, n in counts]
        for name, counts in parse(after).items()
    }

    def summary(name: str, what: str) -> str:
        counts = buckets.get(name) or [(float("inf"), 0.0)]
        total = counts[-1][1]
        p99 = next((le for le, n in counts if n >= 0.99 * total), float("inf"))
        within_50 = next((n for le, n in counts if le >= 0.05), total)
        top = next((le for le, n in counts if n >= total), float("inf"))
        return (
            f"{what} p99 <= {p99 * 1000:g} ms, {total - within_50:.0f} of {total:.0f} over 50 ms, "
            f"all <= {top * 1000:g} ms"
        )

    return "the relay's /metrics: " + "; ".join(
        (
            summary("lr_ledger_durable_seconds", "appends until durable"),
            summary("lr_ledger_write_seconds", "the writer's batches (fsync included)"),
            summary("lr_event_loop_lag_seconds", "the event loop's lag (every 0.1 s)"),
        )
    )


def print_timeline(acks: list[tuple[float, int, float, float]], steal: dict[int, float]) -> None:
    """Acks by the second they were sent in, and the box's steal in it: where in the run the
    slow ones were."""
    by_second: dict[int, list[float]] = {}
    for latency, _, sent, _ in acks:
        by_second.setdefault(int(sent), []).append(latency * 1000)
    for second in sorted(by_second):
        lat = sorted(by_second[second])
        p50, p99 = lat[len(lat) // 2], percentile(lat, 99)
        print(
            f"  second {second:3d}: {len(lat):5d} acks, p50 {p50:6.1f}, p99 {p99:6.1f} ms, "
            f"steal {steal.get(second, 0.0) * 100:3.0f}%"
        )


class Steal:
    """The hypervisor's share of this box's cores (``steal`` in /proc/stat), sampled every
    0.1 s on a thread: time the relay's runnable threads waited for a core that another guest
    had. Zero on a machine of its own; here, the noise a run cannot control."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (perf_counter, steal seconds so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steal", daemon=True)

    @staticmethod
    def now() -> float:
        try:
            with open("/proc/stat") as f:
                return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append((time.perf_counter(), self.now()))

    def __enter__(self) -> Steal:
        self.samples.append((time.perf_counter(), self.now()))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), self.now()))

    def per_second(self, origin: float) -> dict[int, float]:
        """Steal in each whole second from ``origin`` (a ``perf_counter`` time, which is the
        same clock in every process), as a share of all the box's cores."""
        cores = os.cpu_count() or 1
        by: dict[int, float] = {}
        for (t0, s0), (_, s1) in zip(self.samples, self.samples[1:], strict=False):
            second = int(t0 - origin)
            by[second] = by.get(second, 0.0) + (s1 - s0) / cores
        return by

    def summary(self) -> str:
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        cores = os.cpu_count() or 1
        seconds = self.per_second(t0)
        worst = max(seconds.items(), key=lambda kv: kv[1], default=(0, 0.0))
        return (
            f"the box: the hypervisor took {(s1 - s0) / max(t1 - t0, 1e-9) / cores * 100:.1f}% "
            f"of its {cores} cores during the run (steal), {worst[1] * 100:.0f}% in its worst "
            f"second ({worst[0]} s in)"
        )


STARTED = time.perf_counter()
HELPER_PIDS: list[int] = []  # the relay's own child processes (its ledger writer)


async def run_clients(spec: dict) -> None:
    """Child process: ``count`` participants from ``first`` on; prints acks (latency to the
    ack's arrival, seq, when sent, latency to the generator's reading it) and errors."""
    from server.auth import TokenSigner

    # The phones have CPUs of their own; here they share the relay's two cores, and at the
    # same priority the scheduler kept the relay waiting behind them (see --generator-nice).
    os.nice(spec["nice"])
    signer = TokenSigner(SECRET)
    acks: list[tuple[float, int, float, float]] = []
    errors: list[int] = []
    # Over WebSockets each participant holds its own connection, as each phone does.
    ws = spec["heartbeats"] == "ws"
    connector = aiohttp.TCPConnector(limit=0 if ws else spec["connections"])
    clock = Clock()
    ticking = asyncio.ensure_future(clock.run())
    stay = Stay(spec["count"]) if spec.get("stay") and ws else None
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
                    clock,
                    stay,
                )
                for i in range(spec["first"], spec["first"] + spec["count"])
            )
        )
    ticking.cancel()
    print(json.dumps({"acks": acks, "errors": errors, "started": STARTED}))


class GcPauses:
    """The cycle collector's pauses in this process, by generation (gc.callbacks): wall
    time, and the thread's CPU time in them (less when the box took the core away)."""

    def __init__(self) -> None:
        self.started = (0.0, 0.0)
        self.pauses: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = (time.perf_counter(), time.thread_time())
        else:
            wall, cpu = self.started
            self.pauses[info["generation"]].append(
                (time.perf_counter() - wall, time.thread_time() - cpu)
            )

    def summary(self) -> str:
        parts = []
        for g, p in self.pauses.items():
            longest = max(p, default=(0.0, 0.0))
            parts.append(
                f"gen{g} {len(p)} x, max {longest[0] * 1000:.1f} ms "
                f"({longest[1] * 1000:.1f} ms CPU), total {sum(w for w, _ in p) * 1000:.0f} ms"
            )
        return "collector: " + "; ".join(parts)


GC_PAUSES = GcPauses()


def roster_import(tmp: Path, rows: int) -> float:
    from server.store import TOWNSHIPS

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
    if len(sys.argv) > 2 and sys.argv[1] == "_answers":
        asyncio.run(run_answers(json.loads(sys.argv[2])))
        return
    from server.config import Config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=48, help="heartbeats per participant")
    parser.add_argument("--interval", type=float, default=0.6, help="seconds between them")
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
    parser.add_argument(
        "--generator-nice",
        type=int,
        default=10,
        help="the load generator's niceness (0: the relay's priority); it stands for phones, "
        "which do not take the relay's cores",
    )
    parser.add_argument(
        "--stay",
        action="store_true",
        help="members do not leave: the lecture ends while all are watching, and the report "
        "(its time included) comes from that end (heartbeats over WebSockets only)",
    )
    parser.add_argument("--roster", type=int, default=30000)
    parser.add_argument(
        "--commit-interval",
        type=float,
        default=Config.ledger_commit_interval_s,
        help="least seconds between two ledger commits (LR_LEDGER_COMMIT_INTERVAL)",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=Config.checkpoint_interval_s,
        help="seconds between signed checkpoints and live reports brought up to date "
        "(LR_CHECKPOINT_INTERVAL); compress it with the timeline to see a lecture's end as "
        "the server would meet it",
    )
    parser.add_argument(
        "--gc-pace",
        type=float,
        default=Config.gc_pace_s,
        help="seconds between the collector's paced young collections (LR_GC_PACE; 0: none)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print the acks' percentiles second by second"
    )
    parser.add_argument(
        "--checks",
        action="store_true",
        help="a roll call (点名) answered by every member within its window, instead",
    )
    parser.add_argument(
        "--answer-spread",
        type=float,
        default=30.0,
        help="--checks: seconds over which the members answer (the window is 90)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first drive the same load through a bare aiohttp application (the floor)",
    )
    args = parser.parse_args()
    if args.stay and args.heartbeats != "ws":
        parser.error("--stay needs --heartbeats ws: a member watches on their socket")
    if not 0 < args.answer_spread <= 80:
        parser.error("--answer-spread is 0-80 s: within the 90 s window, with time to spare")
    asyncio.run(bench_checks(args) if args.checks else bench(args))


if __name__ == "__main__":
    main()
