#!/usr/bin/env python3
"""Fan-out benchmark: one ~1 Mbit/s VP8 + Opus lecturer, N recv-only viewers in separate
processes, the relay's CPU measured over a steady window; in the same run, the same kind of
load through aiortc's MediaRelay (which re-encodes per viewer), and the machine's floor
(SRTP protect + UDP sendto of the same packets in a tight loop).

    .venv/bin/python scripts/bench_fanout.py [--viewers 50] [--window 10]
    .venv/bin/python scripts/bench_fanout.py --hostile [--viewers 20] [--window 5]

Last line:
    fanout: N viewers, X us/pkt, Y viewers/core at 1 Mbit/s, Zx MediaRelay, Wx floor,
        Px paced floor, D% delivered, path native|python
With the native loop built, the Python loop is measured first in the same run (``--fastpath``).
With ``--hostile``, the relay alone twice (no floor, no MediaRelay): plain, then with one more
viewer sending malformed RTCP (tests.sources.hostile_feedback) 20 rounds a second:
    hostile: N viewers + 1 hostile, X us/pkt against Y plain (Zx), D% delivered
Everything binds 127.0.0.1 and every process stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import aiohttp  # noqa: E402
from benchlib import PacketCounter, cpu_seconds, scratch_dir  # noqa: E402

from media.fastpath import restrict_host_addresses  # noqa: E402
from media.native import BUILT  # noqa: E402

FASTPATH = "native"  # the relay's loop for the runs (--fastpath)
from tests.client import publish, watch  # noqa: E402
from tests.sources import clip_tracks, hostile_feedback  # noqa: E402

PY = sys.executable
LOOPBACK = ("127.0.0.1",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- child processes -------------------------------------------------------------------------
async def run_publisher(url: str, session: str, token: str, seconds: float) -> None:
    restrict_host_addresses(LOOPBACK)
    async with aiohttp.ClientSession() as http:
        pub = await publish(http, url, session, token, clip_tracks())
        await asyncio.sleep(seconds)
        await pub.stop(http)


async def run_viewers(url: str, session: str, token: str, count: int) -> None:
    """Join ``count`` viewers, print 'ready', then on 'report' print their packet counts."""
    restrict_host_addresses(LOOPBACK)
    counters = []
    async with aiohttp.ClientSession() as http:
        viewers = []
        for _ in range(count):
            v = await watch(http, url, session, token)
            counter = PacketCounter()
            counter.attach(v.pc)
            counters.append(counter)
            viewers.append(v)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        print(json.dumps({"packets": sum(c.packets for c in counters)}), flush=True)
        for v in viewers:
            await v.pc.close()


class _SeqCounter(PacketCounter):
    """Counts like PacketCounter and keeps the newest sequence number per SSRC (the RTP
    header is in the clear under SRTP)."""

    def __init__(self) -> None:
        super().__init__()
        self.newest: dict[int, int] = {}

    def count(self, data: bytes) -> None:
        super().count(data)
        self.newest[int.from_bytes(data[8:12], "big")] = int.from_bytes(data[2:4], "big")


async def run_hostile(url: str, session: str, token: str, rounds_per_s: float) -> None:
    """One viewer that sends the relay malformed RTCP ``rounds_per_s`` times a second; prints
    'ready', then on 'report' its packet count, like run_viewers."""
    restrict_host_addresses(LOOPBACK)
    async with aiohttp.ClientSession() as http:
        v = await watch(http, url, session, token)
        counter = _SeqCounter()
        counter.attach(v.pc)
        sdp = v.pc.remoteDescription.sdp
        sections = sdp.split("\r\nm=")[1:]
        ssrc_of = {
            m.split(" ", 1)[0]: int(re.search(r"a=ssrc:(\d+)", m).group(1))
            for m in sections
            if re.search(r"a=ssrc:(\d+)", m)
        }
        video = ssrc_of.get("video", 0)
        dtls = v.pc.getTransceivers()[0].receiver.transport
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        report = loop.run_in_executor(None, sys.stdin.readline)
        rounds = 0
        while not report.done():
            for packet in hostile_feedback(
                0x1234, video, list(ssrc_of.values()), counter.newest.get(video, 0)
            ):
                try:
                    await dtls._send_rtp(packet)
                except ConnectionError:
                    pass
            rounds += 1
            await asyncio.sleep(1 / rounds_per_s)
        await report
        print(json.dumps({"packets": counter.packets, "rounds": rounds}), flush=True)
        await v.pc.close()


def run_mediarelay_server(port: int) -> None:
    """WHIP/WHEP in the plainest aiortc way: MediaRelay, each viewer's sender encoding."""
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    restrict_host_addresses(LOOPBACK)
    relay = MediaRelay()
    tracks: dict[str, object] = {}
    pcs: set = set()

    async def answer(request, setup):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)
        setup(pc)
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        if request.path.startswith("/whep/"):
            for kind in ("audio", "video"):
                if kind in tracks:
                    pc.addTrack(relay.subscribe(tracks[kind]))
        await pc.setLocalDescription(await pc.createAnswer())
        rid = secrets.token_hex(4)
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"{request.path}/{rid}"},
        )

    async def whip(request):
        def setup(pc):
            pc.on("track", lambda track: tracks.__setitem__(track.kind, track))

        return await answer(request, setup)

    async def whep(request):
        return await answer(request, lambda pc: None)

    async def delete(request):
        return web.Response()

    app = web.Application()
    app.router.add_post("/whip/{s}", whip)
    app.router.add_post("/whep/{s}", whep)
    app.router.add_delete("/{k}/{s}/{r}", delete)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


# -- the floor -------------------------------------------------------------------------------
def run_sink(count: int) -> None:
    """UDP sockets that drain whatever arrives, like viewers that never answer."""
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            try:
                while True:
                    key.fileobj.recv(2048)
            except BlockingIOError:
                pass


def measure_floor(
    destinations: int, seconds: float = 3.0, size: int = 1100, pace: float | None = None
) -> float:
    """us of CPU per packet for SRTP protect + sendto on loopback, round-robin over as many
    receiving sockets (in another process) as the relay has viewers: what no relay beats.

    With ``pace`` (rounds per second), one packet to every socket per round at the stream's
    own rate: the receiving process then sleeps between rounds, as viewers do, and the kernel
    wakes it as the relay's datagrams arrive (the tight loop never lets it sleep)."""
    from pylibsrtp import Policy, Session

    sink = subprocess.Popen(
        [PY, __file__, "_sink", str(destinations)], stdout=subprocess.PIPE, text=True
    )
    try:
        ports = [int(p) for p in sink.stdout.readline().split()]
        sessions = []
        for _ in ports:
            policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
            policy.allow_repeat_tx = True
            sessions.append(Session(policy))
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.setblocking(False)
        targets = [(("127.0.0.1", p), s.protect) for p, s in zip(ports, sessions, strict=True)]
        payload = os.urandom(size)
        sendto = out.sendto
        sent = 0
        start_cpu = time.process_time()
        end = time.monotonic() + seconds
        seq = 0
        next_round = time.monotonic()
        while time.monotonic() < end:
            if pace:
                next_round += 1 / pace
                time.sleep(max(next_round - time.monotonic(), 0))
            seq = (seq + 1) & 0xFFFF
            header = b"\x80\x60" + seq.to_bytes(2, "big") + bytes(8)
            for addr, protect in targets:
                try:
                    sendto(protect(header + payload), addr)
                except BlockingIOError:
                    pass
                sent += 1
        return (time.process_time() - start_cpu) * 1e6 / sent
    finally:
        sink.terminate()
        sink.wait()


# -- orchestration ---------------------------------------------------------------------------
class Children:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen([PY, *args], **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? ([\d.e+]+)$", line)
        if m:  # each series summed under its name, and kept apart with its labels
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
            if m.group(2):
                out[m.group(1) + m.group(2)] = float(m.group(3))
    return out


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        await asyncio.sleep(0.2)


def start_viewers(children, url, session, token, total, procs) -> list[subprocess.Popen]:
    per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    viewers = []
    for n in filter(None, per):
        viewers.append(
            children.start(
                [__file__, "_viewers", url, session, token, str(n)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for v in viewers:
        line = v.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"bench: a viewer process failed to join ({line!r})")
    return viewers


def collect(viewers: list[subprocess.Popen]) -> int:
    total = 0
    for v in viewers:
        v.stdin.write("report\n")
        v.stdin.flush()
    for v in viewers:
        total += json.loads(v.stdout.readline())["packets"]
    return total


async def bench_relay(
    args, children: Children, record: bool = True, hostile: bool = False, fastpath: str = ""
) -> dict:
    data = scratch_dir("lr-bench-")
    port = free_port()
    env = dict(
        os.environ,
        LR_DATA=str(data),
        LR_PORT=str(port),
        LR_ICE_HOSTS="127.0.0.1",
        LR_ICE_PEER_NETWORKS="127.0.0.0/8",
        LR_LOG_LEVEL="WARNING",
        LR_FASTPATH=fastpath or FASTPATH,
    )
    cli = [str(ROOT / ".venv/bin/lecture-relay")]
    create = [*cli, "session", "create", "--title", "bench", "--video-codec", "VP8", "--json"]
    links = json.loads(
        subprocess.check_output(create + ([] if record else ["--no-record"]), env=env)
    )
    server = subprocess.Popen([*cli, "serve", "--workers", "1"], env=env)
    children.procs.append(server)
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            await scrape(url)
            return True
        except aiohttp.ClientError:
            return False

    await wait_for(up, 20, "the relay to start")
    sid = links["session_id"]
    seconds = args.warmup + args.window + 30
    children.start([__file__, "_publish", url, sid, links["lecturer_token"], str(seconds)])
    await wait_for(lambda: _gt(scrape(url), "lr_packets_received_total", 100), 30, "the publisher")
    viewers = start_viewers(children, url, sid, links["viewer_token"], args.viewers, args.procs)

    if hostile:
        bad = children.start(
            [__file__, "_hostile", url, sid, links["viewer_token"], "20"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if bad.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the hostile viewer failed to join")
        viewers.append(bad)
    joined = args.viewers + (1 if hostile else 0)

    async def all_flowing() -> bool:
        m = await scrape(url)
        return m.get("lr_subscribers", 0) >= joined

    await wait_for(all_flowing, 60, "all viewers to connect")
    await asyncio.sleep(args.warmup)
    m0, c0, t0 = await scrape(url), cpu_seconds(server.pid), time.monotonic()
    path = "native" if m0.get('lr_fastpath{path="native"}') == 1 else "python"
    await asyncio.sleep(args.window)
    m1, c1, t1 = await scrape(url), cpu_seconds(server.pid), time.monotonic()
    # delivery: what the viewers decrypted against what the relay sent them, over the run
    # (resends count as sent: a hostile viewer's NACKs are answered, within their bounds)
    out = ("lr_packets_forwarded_total", "lr_nack_retransmits_total")
    before = await scrape(url)
    received = collect(viewers)
    await asyncio.sleep(0.5)
    after = await scrape(url)
    sent_before, sent = (sum(m.get(k, 0) for k in out) for m in (before, after))
    egress = m1["lr_packets_forwarded_total"] - m0["lr_packets_forwarded_total"]
    ingress = m1["lr_packets_received_total"] - m0["lr_packets_received_total"]
    bits = (m1["lr_bytes_forwarded_total"] - m0["lr_bytes_forwarded_total"]) * 8
    return {
        "cpu": (c1 - c0) / (t1 - t0),
        "us_per_pkt": (c1 - c0) * 1e6 / max(egress, 1),
        "pkts_per_viewer_s": egress / (t1 - t0) / joined,
        "ingress_pps": ingress / (t1 - t0),
        "mbps_per_viewer": bits / (t1 - t0) / joined / 1e6,
        "resent": m1.get("lr_nack_retransmits_total", 0) - m0.get("lr_nack_retransmits_total", 0),
        "delivered": received / max(min(sent, sent_before), 1),
        "path": path,
    }


async def _gt(coro, key: str, value: float) -> bool:
    try:
        return (await coro).get(key, 0) > value
    except aiohttp.ClientError:
        return False


async def bench_mediarelay(args, children: Children) -> dict:
    port = free_port()
    server = children.start([__file__, "_mediarelay", str(port)])
    url = f"http://127.0.0.1:{port}"
    await asyncio.sleep(1.5)
    seconds = args.warmup + args.window + 30
    children.start([__file__, "_publish", url, "s", "t", str(seconds)])
    await asyncio.sleep(3)
    viewers = start_viewers(children, url, "s", "t", args.baseline_viewers, 1)
    await asyncio.sleep(args.warmup)
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    await asyncio.sleep(args.window)
    c1, t1 = cpu_seconds(server.pid), time.monotonic()
    received = collect(viewers)
    cpu = (c1 - c0) / (t1 - t0)
    return {"cpu": cpu, "viewers_per_core": args.baseline_viewers / max(cpu, 1e-6), "rx": received}


async def orchestrate_hostile(args) -> None:
    """The relay with and without one hostile viewer, in this one invocation."""
    runs = {}
    for name, hostile in (("plain", False), ("hostile", True)):
        children = Children()
        try:
            runs[name] = await bench_relay(args, children, record=False, hostile=hostile)
        finally:
            children.stop()
        r = runs[name]
        print(
            f"relay {name}: {args.viewers} viewers{' + 1 hostile' if hostile else ''}, "
            f"cpu {r['cpu'] * 100:.0f}% of a core, {r['us_per_pkt']:.1f} us/egress pkt, "
            f"{r['resent'] / args.window:.0f} resends/s, {r['delivered'] * 100:.1f}% delivered",
            flush=True,
        )
    plain, bad = runs["plain"], runs["hostile"]
    print(
        f"hostile: {args.viewers} viewers + 1 hostile, {bad['us_per_pkt']:.1f} us/pkt against "
        f"{plain['us_per_pkt']:.1f} plain ({bad['us_per_pkt'] / plain['us_per_pkt']:.2f}x), "
        f"{bad['delivered'] * 100:.1f}% delivered"
    )


async def orchestrate(args) -> None:
    if args.hostile:
        await orchestrate_hostile(args)
        return
    floor = measure_floor(args.viewers)
    print(f"floor: SRTP protect + sendto {floor:.1f} us/pkt", flush=True)
    paced = measure_floor(args.viewers, seconds=5.0, pace=160.0)
    print(
        f"floor paced like the stream (160 rounds/s, the receivers sleeping between them): "
        f"{paced:.1f} us/pkt",
        flush=True,
    )
    python = None
    if args.fastpath == "both":  # the fallback first, then the native loop, in this run
        children = Children()
        try:
            python = await bench_relay(args, children, record=False, fastpath="python")
        finally:
            children.stop()
        print(
            f"python loop (recording off): {python['us_per_pkt']:.1f} us/egress pkt, "
            f"{python['delivered'] * 100:.1f}% delivered",
            flush=True,
        )
    if args.recording in ("off", "both"):
        children = Children()
        try:
            off = await bench_relay(args, children, record=False)
        finally:
            children.stop()
        print(
            f"recording off: {off['us_per_pkt']:.1f} us/egress pkt ({off['path']} loop)",
            flush=True,
        )
        if python is not None:
            print(
                f"{off['path']} loop against the python loop (recording off): "
                f"{off['us_per_pkt'] / python['us_per_pkt']:.2f}x CPU per egress packet",
                flush=True,
            )
    children = Children()
    try:
        ours = await bench_relay(args, children, record=args.recording != "off")
    finally:
        children.stop()
    if args.recording == "both":
        print(
            f"recording on: {ours['us_per_pkt']:.1f} us/egress pkt "
            f"({(ours['us_per_pkt'] / off['us_per_pkt'] - 1) * 100:+.1f}% against off)",
            flush=True,
        )
    print(
        f"relay: {args.viewers} viewers, cpu {ours['cpu'] * 100:.0f}% of a core, "
        f"{ours['us_per_pkt']:.1f} us/egress pkt, {ours['pkts_per_viewer_s']:.0f} pkt/s and "
        f"{ours['mbps_per_viewer']:.2f} Mbit/s per viewer, ingress {ours['ingress_pps']:.0f} pkt/s",
        flush=True,
    )
    children = Children()
    try:
        base = await bench_mediarelay(args, children)
    finally:
        children.stop()
    print(
        f"MediaRelay: {args.baseline_viewers} viewers, cpu {base['cpu'] * 100:.0f}% of a core, "
        f"{base['viewers_per_core']:.1f} viewers/core",
        flush=True,
    )
    print(f"relay against the paced floor: {ours['us_per_pkt'] / paced:.2f}x", flush=True)
    # viewers per core at 1 Mbit/s: scale the measured packet rate to a 1 Mbit/s stream
    pkts_at_1mbit = ours["pkts_per_viewer_s"] / max(ours["mbps_per_viewer"], 1e-6)
    per_core = 1e6 / (ours["us_per_pkt"] * pkts_at_1mbit)
    print(
        f"fanout: {args.viewers} viewers, {ours['us_per_pkt']:.1f} us/pkt, "
        f"{per_core:.0f} viewers/core at 1 Mbit/s, "
        f"{per_core / base['viewers_per_core']:.0f}x MediaRelay, "
        f"{ours['us_per_pkt'] / floor:.2f}x floor, {ours['us_per_pkt'] / paced:.2f}x paced "
        f"floor, {ours['delivered'] * 100:.1f}% delivered, path {ours['path']}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd, rest = sys.argv[1], sys.argv[2:]
        if cmd == "_publish":
            asyncio.run(run_publisher(rest[0], rest[1], rest[2], float(rest[3])))
        elif cmd == "_viewers":
            asyncio.run(run_viewers(rest[0], rest[1], rest[2], int(rest[3])))
        elif cmd == "_hostile":
            asyncio.run(run_hostile(rest[0], rest[1], rest[2], float(rest[3])))
        elif cmd == "_sink":
            run_sink(int(rest[0]))
        elif cmd == "_mediarelay":
            run_mediarelay_server(int(rest[0]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--procs", type=int, default=2, help="viewer processes")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--baseline-viewers", type=int, default=2)
    parser.add_argument(
        "--recording",
        choices=["on", "off", "both"],
        default="both",
        help="measure the relay with the live recorder on, off, or both (the summary: on)",
    )
    parser.add_argument(
        "--fastpath",
        choices=["native", "python", "both"],
        default="both" if BUILT else "python",
        help="the relay's fan-out loop (LR_FASTPATH); both: the python loop measured first, "
        "in the same run (the default where the native one is built)",
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="the relay plain, then with one viewer sending malformed RTCP; their ratio last",
    )
    args = parser.parse_args()
    global FASTPATH
    FASTPATH = "python" if args.fastpath == "python" else "native"
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
