"""The network test bed as a pytest fixture: ``scripts/netbed.py`` run for one test, with the
relay in the server namespace and peers in the phone namespace (real processes, real aiortc).

Needs root, ``ip`` and /dev/net/tun: without them the tests that use it are skipped and say
why (CI runs as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.waiting import stop_server

ROOT = Path(__file__).resolve().parent.parent
NETBED = ROOT / "scripts" / "netbed.py"
RELAY_PORT = 8080  # the namespaces are the test's own: nothing else listens there


def unavailable() -> str | None:
    """Why this machine cannot make a bed, or None: tried for real (``netbed probe``), since
    root alone is not enough in a container without CAP_NET_ADMIN."""
    if os.geteuid() != 0:
        return "the network test bed needs root (network namespaces, tun devices)"
    if shutil.which("ip") is None:
        return "the network test bed needs iproute2's ip"
    if not os.path.exists("/dev/net/tun"):
        return "the network test bed needs /dev/net/tun"
    done = subprocess.run(
        [sys.executable, str(NETBED), "probe"], capture_output=True, text=True, timeout=30
    )
    return None if done.returncode == 0 else (done.stderr.strip() or "netbed probe failed")


WHY_NOT = unavailable()
needs_bed = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@dataclass
class Bed:
    id: str
    profile: str
    srv: str
    phone: str
    server: str
    proc: subprocess.Popen
    tmp: Path
    relay: subprocess.Popen | None = None
    others: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.server}:{RELAY_PORT}"

    def env(self, **extra: str) -> dict:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LR_DATA": str(self.tmp / "data"),
            "LR_LEDGER_KEY": str(self.tmp / "keys" / "ledger.pem"),
            "LR_LOG_LEVEL": "WARNING",
            **extra,
        }

    def popen(self, ns: str, *args: str, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            cwd=ROOT,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.others.append(proc)
        return proc

    def start_relay(self, **env: str) -> None:
        """``serve`` in the server namespace, offering only the bed's address, trying only
        the bed's networks (learned candidates included)."""
        self.relay = self.popen(
            self.srv, sys.executable, "-m", "server", "serve",
            LR_HOST=self.server, LR_PORT=str(RELAY_PORT), LR_ICE_HOSTS=self.server,
            LR_ICE_PEER_NETWORKS="198.18.0.0/15", **env,
        )  # fmt: skip
        line = read_line(self.relay, 60)
        assert "listening" in line, line

    def start_turn(self, secret: str) -> str:
        """coturn in the server namespace, TCP and UDP on 3478, REST credentials
        (``use-auth-secret``); returns the URL a phone behind a UDP block can use."""
        turn = shutil.which("turnserver")
        if turn is None:
            pytest.fail("coturn is not installed (scripts/test installs it)")
        self.popen(
            self.srv, turn, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
            "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=lecture-relay",
            f"--listening-ip={self.server}", "--listening-port=3478",
            f"--relay-ip={self.server}", "--min-port=49160", "--max-port=49400",
            f"--pidfile={self.tmp / 'turn.pid'}", "--log-file=stdout", "--simple-log",
        )  # fmt: skip
        return f"turn:{self.server}:3478?transport=tcp"

    def recover(self) -> None:
        """The link recovers: no delay, loss or rate limit from now on."""
        self.proc.send_signal(signal.SIGUSR1)

    def cli(self, *args: str) -> str:
        """``lecture-relay`` on the relay's data (its files, from this namespace)."""
        done = subprocess.run(
            [sys.executable, "-m", "server", *args],
            cwd=ROOT, env=self.env(LR_PUBLIC_URL=self.url), capture_output=True, text=True,
            check=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    def session(self) -> dict:
        return json.loads(self.cli("session", "create", "--title", "网络测试", "--json"))

    def member_url(self, sid: str, member: str = "NB0001") -> str:
        """A member's personal watch link (a member token: their record is kept)."""
        token = self.cli("token", "member", "--session", sid, "--subject", member).strip()
        return f"{self.url}/watch?session={sid}&token={token}"

    def browser_phone(
        self,
        url: str,
        seconds: float,
        handover_at: float | None = None,
        trace: str = "",
        recover_at: float | None = None,
        rollcall: tuple[float, str] | None = None,
    ) -> subprocess.Popen:
        """Headless Chromium on ``url`` in the phone namespace (tests/netbed_phone.py); the
        link recovers ``recover_at`` seconds after its first frame, when given; ``rollcall``:
        (seconds after the first frame, the lecturer's token) for a roll call it answers."""
        args = [sys.executable, str(ROOT / "tests" / "netbed_phone.py"), url, str(seconds)]
        if trace:
            args += ["--trace", trace]
        if recover_at is not None:
            args += ["--recover-at", str(recover_at), "--bed-pid", str(self.proc.pid)]
        if handover_at is not None:
            args += ["--handover-at", str(handover_at), "--bed", self.id]
        if rollcall is not None:
            args += ["--rollcall-at", str(rollcall[0]), "--lecturer", rollcall[1]]
        return self.popen(self.phone, *args)

    def peer(self, ns: str, mode: str, sid: str, token: str, seconds: float) -> subprocess.Popen:
        script = str(ROOT / "tests" / "netbed_peer.py")
        return self.popen(ns, sys.executable, script, mode, self.url, sid, token, str(seconds))


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The process's next line of output, or fail after ``timeout`` seconds."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()):
            line = proc.stdout.readline()
            if line or proc.poll() is not None:
                return line
    raise AssertionError(f"no output in {timeout} s from {proc.args}")


def result_of(proc: subprocess.Popen, timeout: float) -> dict:
    """A netbed_peer process's JSON line, once it is done."""
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"{proc.args} printed no result (exit {proc.returncode})"
    return json.loads(lines[-1])


@contextlib.contextmanager
def made_bed(profile: str, tmp: Path, bed_id: str | None = None) -> Iterator[Bed]:
    """A bed with ``profile``, removed with all it ran when the block ends."""
    bed_id = bed_id or f"t{os.getpid() % 100000}"
    proc = subprocess.Popen(
        [sys.executable, str(NETBED), "up", "--profile", profile, "--id", bed_id],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    made = None
    try:
        ready = json.loads(read_line(proc, 20))
        srv, phone = ready["namespaces"]
        made = Bed(bed_id, profile, srv, phone, ready["server"], proc, tmp)
        yield made
    finally:
        for other in (made.others if made else [])[::-1]:
            stop_server(other)
        stop_server(proc)
        subprocess.run([sys.executable, str(NETBED), "down", "--id", bed_id], capture_output=True)


@pytest.fixture
def bed(request, tmp_path):
    """A bed with the profile the test's ``netbed_profile`` marker names (default ``4g``)."""
    marker = request.node.get_closest_marker("netbed_profile")
    with made_bed(marker.args[0] if marker else "4g", tmp_path) as made:
        yield made
