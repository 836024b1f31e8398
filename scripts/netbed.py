"""A network test bed: a server namespace and a phone namespace joined by one impaired link.

Loopback hides what networks do. Here two network namespaces made for the run (``lr-<id>-srv``
and ``lr-<id>-phone``) each get a tun device with a 1500-byte MTU, and this process moves IP
packets between the two devices, applying a profile's delay, jitter, loss and rate in each
direction (this machine's kernel has no netem, so the impairment lives in user space). The
addresses come from 198.18.0.0/15 and exist only inside those namespaces; nothing is added to
the root namespace, and the devices vanish with this process.

    scripts/netbed up --profile 4g [--id ID]    # the bed, until interrupted (prints its env)
    scripts/netbed down [--id ID]               # remove what a run left (every lr-* bed)
    scripts/netbed profiles
    kill -USR1 <pid of up>                      # the link recovers: the clean profile

Run a command inside: ``ip netns exec lr-<id>-srv ...`` (the relay), ``ip netns exec
lr-<id>-phone ...`` (a phone). Needs root. The tests use it through tests/netbed.py.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

SERVER_ADDR = "198.18.0.1"
PHONE_ADDR = "198.18.0.2"
HANDOVER_ADDR = "198.18.0.3"  # the phone's second address (Wi-Fi to 4G)
MTU = 1500
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
UDP = 17


@dataclass(frozen=True)
class Profile:
    """One direction's impairment is the same both ways: ``delay_ms`` +- ``jitter_ms`` each way,
    ``loss`` (0-1) of packets dropped, ``rate_kbps`` (0: unlimited) with a queue of at most
    ``queue_ms`` behind it (tail drop past it), and UDP dropped altogether when ``block_udp``."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rate_kbps: float = 0.0
    queue_ms: float = 300.0
    block_udp: bool = False


PROFILES = {
    "clean": Profile(),
    "4g": Profile(delay_ms=50, jitter_ms=10, loss=0.03, rate_kbps=2500),
    "weak": Profile(delay_ms=150, loss=0.08, rate_kbps=600),
    "handover": Profile(delay_ms=50, jitter_ms=10, loss=0.01, rate_kbps=2500),
    "udp-blocked": Profile(delay_ms=30, block_udp=True),
    # loss alone, for what NACK and keyframe requests repair (scripts/bench_repair.py)
    "loss2": Profile(delay_ms=50, loss=0.02),
    "loss8": Profile(delay_ms=50, loss=0.08),
}


def namespaces(bed: str) -> tuple[str, str]:
    return f"lr-{bed}-srv", f"lr-{bed}-phone"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


def remove_leftovers(only: str | None = None) -> list[str]:
    """Delete the namespaces of earlier beds (``lr-*``, or this bed's alone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    gone = []
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        mine = only is None and name.startswith("lr-") or only and name in namespaces(only)
        if mine:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            gone.append(name)
    return gone


_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _enter(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def open_tun(ns: str, name: str) -> int:
    """A tun device made inside namespace ``ns`` (this thread visits it), its fd kept here."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _enter(ns)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        if _libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back home")
        os.close(home)
    return fd


def configure(srv: str, phone: str) -> None:
    for ns in (srv, phone):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "-n", srv, "link", "set", "tun-srv", "mtu", str(MTU), "up")
    sh("ip", "-n", phone, "link", "set", "tun-phone", "mtu", str(MTU), "up")
    sh(
        "ip",
        "-n",
        srv,
        "addr",
        "add",
        f"{SERVER_ADDR}/32",
        "peer",
        "198.18.0.0/24",
        "dev",
        "tun-srv",
    )
    sh("ip", "-n", phone, "addr", "add", f"{PHONE_ADDR}/32", "dev", "tun-phone")
    sh(
        "ip",
        "-n",
        phone,
        "route",
        "add",
        f"{SERVER_ADDR}/32",
        "dev",
        "tun-phone",
        "src",
        PHONE_ADDR,
    )


def hand_over(bed: str) -> None:
    """The phone moves from its first address to its second, as Wi-Fi to 4G: the old one dies
    (what was bound to it can no longer send), the route now leaves from the new one."""
    _, phone = namespaces(bed)
    sh("ip", "-n", phone, "addr", "add", f"{HANDOVER_ADDR}/32", "dev", "tun-phone")
    sh("ip", "-n", phone, "addr", "del", f"{PHONE_ADDR}/32", "dev", "tun-phone")
    sh("ip", "-n", phone, "route", "replace", f"{SERVER_ADDR}/32", "dev", "tun-phone", "src",
       HANDOVER_ADDR)  # fmt: skip


class Direction:
    """One way of the link: packets read from one tun, written to the other when due."""

    def __init__(self, profile: Profile, out_fd: int, rng: random.Random) -> None:
        self.p, self.out, self.rng = profile, out_fd, rng
        self.free_at = 0.0  # when the rate limiter is done with what it has queued
        self.last_due = 0.0  # the latest time a queued packet is due
        self.floor = 0.0  # no packet due before this (see recover)
        self.sent = self.dropped = self.blocked = self.overflow = 0

    def admit(self, packet: bytes, now: float, queue: list) -> None:
        p = self.p
        if p.block_udp and len(packet) >= 20 and packet[0] >> 4 == 4 and packet[9] == UDP:
            self.blocked += 1
            return
        if p.loss and self.rng.random() < p.loss:
            self.dropped += 1
            return
        start = now
        if p.rate_kbps:
            start = max(now, self.free_at)
            if start - now > p.queue_ms / 1000:
                self.overflow += 1
                return
            self.free_at = start + len(packet) * 8 / (p.rate_kbps * 1000)
        delay = p.delay_ms + (self.rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0)
        due = max(start + max(0.0, delay) / 1000, self.floor)
        self.last_due = max(self.last_due, due)
        heapq.heappush(queue, (due, id(packet), self, packet))

    def recover(self, profile: Profile) -> None:
        """The link gets ``profile`` from now on. What is queued leaves first: a link whose
        delay falls from 150 ms to 0 does not deliver new packets before the ones already on
        their way (done so, the phone read the reordering as loss and stepped down)."""
        self.p, self.floor, self.free_at = profile, self.last_due, 0.0

    def stats(self) -> dict:
        return {"sent": self.sent, "lost": self.dropped, "udp_blocked": self.blocked,
                "queue_drops": self.overflow}  # fmt: skip


def forward(bed: str, profile: Profile, seed: int) -> None:
    """Make the bed, then move packets until SIGTERM/SIGINT; remove it on the way out."""
    srv, phone = namespaces(bed)
    remove_leftovers(bed)
    sh("ip", "netns", "add", srv)
    sh("ip", "netns", "add", phone)
    try:
        srv_fd, phone_fd = open_tun(srv, "tun-srv"), open_tun(phone, "tun-phone")
        configure(srv, phone)
        rng = random.Random(seed)
        up = Direction(profile, srv_fd, rng)  # phone -> server
        down = Direction(profile, phone_fd, rng)  # server -> phone
        queue: list = []
        sel = selectors.DefaultSelector()
        sel.register(phone_fd, selectors.EVENT_READ, up)
        sel.register(srv_fd, selectors.EVENT_READ, down)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))

        def recover(*_) -> None:  # SIGUSR1: the network recovers (the clean profile both ways)
            up.recover(PROFILES["clean"])
            down.recover(PROFILES["clean"])

        signal.signal(signal.SIGUSR1, recover)
        ready = {"ready": True, "server": SERVER_ADDR, "phone": PHONE_ADDR}
        ready.update(namespaces=[srv, phone], profile=asdict(profile))
        print(json.dumps(ready), flush=True)
        stats_at = time.monotonic() + 1
        while not stop:
            now = time.monotonic()
            timeout = max(0.0, queue[0][0] - now) if queue else 0.2
            for key, _ in sel.select(min(timeout, 0.2)):
                fd, direction = key.fd, key.data
                while True:
                    try:
                        packet = os.read(fd, 65535)
                    except BlockingIOError:
                        break
                    direction.admit(packet, time.monotonic(), queue)
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, direction, packet = heapq.heappop(queue)
                try:
                    os.write(direction.out, packet)
                    direction.sent += 1
                except OSError:
                    direction.overflow += 1
            if now >= stats_at:  # what the link did, on stderr for whoever watches
                stats_at = now + 1
                print(json.dumps({"up": up.stats(), "down": down.stats()}), file=sys.stderr)
    finally:
        subprocess.run(["ip", "netns", "del", srv], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", phone], capture_output=True, timeout=10)


def probe() -> str | int:
    """0 when a bed can be made here, else why not (a container without CAP_NET_ADMIN, no
    /dev/net/tun...)."""
    bed = f"probe{os.getpid()}"
    srv, phone = namespaces(bed)
    try:
        sh("ip", "netns", "add", srv)
        sh("ip", "netns", "add", phone)
        os.close(open_tun(srv, "tun-srv"))
        return 0
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return f"netbed: cannot make a bed here: {exc} {detail.decode(errors='replace').strip()}"
    finally:
        remove_leftovers(bed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="make the bed and move its packets until interrupted")
    up.add_argument("--profile", choices=sorted(PROFILES), default="4g")
    up.add_argument("--id", default=str(os.getpid()))
    up.add_argument("--seed", type=int, default=1)
    down = sub.add_parser("down", help="remove beds an earlier run left")
    down.add_argument("--id")
    sub.add_parser("profiles", help="the profiles, as JSON")
    sub.add_parser("probe", help="make a bed and remove it at once: exit 0 when this machine can")
    sub.add_parser("handover", help="move a bed's phone to its second address").add_argument("--id")
    args = parser.parse_args()
    if args.command == "probe":
        sys.exit(probe())
    if args.command == "profiles":
        print(json.dumps({k: asdict(v) for k, v in PROFILES.items()}, indent=2))
    elif args.command == "down":
        print("removed:", " ".join(remove_leftovers(args.id)) or "nothing")
    elif args.command == "handover":
        hand_over(args.id)
    else:
        if os.geteuid() != 0:
            sys.exit("netbed: needs root (network namespaces and tun devices)")
        forward(args.id, PROFILES[args.profile], args.seed)


if __name__ == "__main__":
    main()
