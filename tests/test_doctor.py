"""``lecture-relay doctor`` (issue 27): each check that can fail on this machine fails with its
fix, and exit 1; a sound setup passes. The real command, in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.attendance.signing import LedgerKey
from tests.cluster_fixtures import redis_server, redis_url  # noqa: F401
from tests.test_cli import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def doctor(tmp_path):
    key = tmp_path / "keys" / "ledger.pem"
    LedgerKey.load_or_create(key)  # 0600, as the server makes it

    def run(**env: str) -> tuple[int, dict[str, list[dict]]]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LR_")}
        clean.pop("REDIS_URL", None)
        clean |= {"LR_DATA": str(tmp_path / "data"), "LR_LEDGER_KEY": str(key), **env}
        done = subprocess.run(
            [sys.executable, "-m", "server", "doctor", "--json"],
            cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
        found: dict[str, list[dict]] = {}
        for f in json.loads(done.stdout):
            assert f["status"] in ("OK", "WARN", "FAIL") and f["detail"], f
            assert f["status"] == "OK" or f["fix"], f  # what is not OK says how to fix it
            found.setdefault(f["check"], []).append(f)
        return done.returncode, found

    run.key = key
    return run


def statuses(found: dict[str, list[dict]], check: str) -> list[str]:
    return [f["status"] for f in found[check]]


def this_machines_address() -> str:
    """One of this machine's addresses, as the relay would gather it (in a process of its own:
    the tests' own aioice offers 127.0.0.1 alone). Only written into a setting: nothing is sent
    to it."""
    probe = "from aioice.ice import get_host_addresses as g; print(*g(True, False))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    mine = [a for a in found.stdout.split() if not a.startswith("127.")]
    if not mine:
        pytest.skip("this machine has no address but loopback")
    return mine[0]


def test_a_sound_setup_passes(doctor, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-")
    key.write_text("-")
    code, found = doctor(
        LR_HOST="0.0.0.0",
        LR_TLS_CERT=str(cert),
        LR_TLS_KEY=str(key),
        LR_ICE_HOSTS=this_machines_address(),
    )
    assert code == 0, found
    for check in ("tls", "ice-hosts", "ledger-key"):
        assert statuses(found, check) == ["OK"], found[check]
    for check in ("udp-ports", "disk"):  # this machine's own: a small disk warns
        assert statuses(found, check) != ["FAIL"], found[check]
    assert statuses(found, "turn") == ["WARN"]  # none configured: said, not failed
    assert "redis" not in found  # one node


def test_plain_http_on_an_open_address_fails(doctor):
    code, found = doctor(LR_HOST="0.0.0.0")
    assert code == 1 and statuses(found, "tls") == ["FAIL"], found["tls"]
    assert "LR_TLS_CERT" in found["tls"][0]["fix"]
    code, found = doctor(LR_HOST="0.0.0.0", LR_PUBLIC_URL="https://relay.example.gov.cn")
    assert statuses(found, "tls") == ["OK"]  # behind an https proxy


def test_a_loopback_ice_host_fails(doctor):
    code, found = doctor(LR_ICE_HOSTS="127.0.0.1")
    assert code == 1 and statuses(found, "ice-hosts") == ["FAIL"], found["ice-hosts"]
    code, found = doctor(LR_ICE_HOSTS="none")
    assert code == 1 and statuses(found, "ice-hosts") == ["FAIL"]  # and no TURN either


def test_a_key_others_can_read_fails(doctor):
    doctor.key.chmod(0o644)
    code, found = doctor()
    assert code == 1 and statuses(found, "ledger-key") == ["FAIL"], found["ledger-key"]
    assert found["ledger-key"][0]["fix"] == f"chmod 600 {doctor.key}"


def test_redis_down_and_a_silent_turn_server_fail(doctor):
    closed = free_port()
    code, found = doctor(
        REDIS_URL=f"redis://:secret@127.0.0.1:{closed}/0",
        LR_ICE_SERVERS=f"turn:127.0.0.1:{free_port()}",
        LR_TURN_SECRET="s",
    )
    assert code == 1 and statuses(found, "redis") == ["FAIL"], found["redis"]
    assert "secret" not in json.dumps(found["redis"])  # the URL's password is never shown
    assert statuses(found, "turn") == ["FAIL"], found["turn"]


@pytest.fixture
def coturn(tmp_path):
    """coturn with a static-auth-secret, as deploy/turnserver.conf sets it, on loopback."""
    import shutil

    turn = shutil.which("turnserver")
    if turn is None:
        pytest.fail("coturn is not installed (scripts/test installs it)")
    port, low = free_port(), min(free_port() // 2 * 2, 60000)
    proc = subprocess.Popen(
        [
            turn, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
            "--use-auth-secret", "--static-auth-secret=the-right-one", "--realm=lecture-relay",
            "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
            f"--min-port={low}", f"--max-port={low + 100}", f"--pidfile={tmp_path / 'turn.pid'}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"turn:127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_a_turn_secret_coturn_does_not_share_fails(doctor, coturn):
    """The relay hands pages credentials made from LR_TURN_SECRET: the doctor asks coturn for
    an allocation with one, over TCP, as a phone behind a UDP block would."""
    deadline = time.monotonic() + 10
    while True:  # coturn listening
        code, found = doctor(LR_ICE_SERVERS=coturn, LR_TURN_SECRET="the-right-one")
        if statuses(found, "turn") == ["OK"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert statuses(found, "turn") == ["OK"], found["turn"]
    assert "takes the relay's credential" in found["turn"][0]["detail"]
    code, found = doctor(LR_ICE_SERVERS=coturn, LR_TURN_SECRET="a-wrong-one")
    assert code == 1 and statuses(found, "turn") == ["FAIL"], found["turn"]
    assert "static-auth-secret" in found["turn"][0]["fix"]


def test_a_running_redis_answers_and_its_clock_is_this_ones(doctor, redis_url):  # noqa: F811
    """Cluster mode: one Redis round trip says both that it answers and how far its clock is."""
    code, found = doctor(REDIS_URL=redis_url)
    assert statuses(found, "redis") == ["OK"], found["redis"]
    assert statuses(found, "cluster-clock") == ["OK"], found["cluster-clock"]
