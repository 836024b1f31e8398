"""Attendance from the shell, and across a crash of the server process (SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from server.attendance.events import End, Heartbeat, Join, Leave, Start
from server.attendance.ledger import Ledger
from server.attendance.signing import LedgerKey, receipt
from tests.client import publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_cli import free_port
from tests.waiting import wait_health

ROOT = Path(__file__).resolve().parent.parent


def env_for(tmp_path: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "LR_DATA": str(tmp_path / "data"),
        "LR_LEDGER_KEY": str(tmp_path / "keys" / "ledger.pem"),
        "LR_ICE_HOSTS": "127.0.0.1",
        "LR_ICE_PEER_NETWORKS": "127.0.0.0/8",
        "LR_LOG_LEVEL": "WARNING",
        "LR_HEARTBEAT_MIN_GAP": "0",  # the tests send heartbeats back to back
        **extra,
    }


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_ledger(tmp_path: Path, session: str = "s1") -> tuple[Ledger, LedgerKey]:
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    key = LedgerKey.load_or_create(tmp_path / "keys" / "ledger.pem")
    ledger.append_now(session, Start("pub"), 1000)
    ledger.append_now(session, Join("member:1", "p", "token", "127.0.0.1", False), 1100)
    for i in range(3):
        ledger.append_now(session, Heartbeat("p", i * 25, True, True, i, i), 11_000 + i * 10_000)
    ledger.append_now(session, Leave("p", "delete"), 40_000)
    ledger.append_now(session, End("lecturer"), 41_000)
    return ledger, key


def test_keys_show_and_verify_from_the_shell(tmp_path):
    ledger, key = make_ledger(tmp_path)
    seq, head = ledger.head("s1")
    cp = key.sign("s1", seq, head, 50_000, True)
    ledger.save_checkpoint(cp)
    ledger.close()
    (tmp_path / "receipt.json").write_text(json.dumps(receipt(cp, key.public)))

    shown = cli(tmp_path, "keys", "show")
    assert shown.returncode == 0 and key.fingerprint in shown.stdout

    ok = cli(tmp_path, "verify", "s1", "--receipt", str(tmp_path / "receipt.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK") and "receipt matches" in ok.stdout

    db = sqlite3.connect(tmp_path / "data" / "ledger.sqlite3")
    db.execute("DROP TRIGGER events_no_update")
    db.execute("UPDATE events SET at_ms = at_ms + 60000 WHERE seq = 5")
    db.commit()
    db.close()
    bad = cli(tmp_path, "verify", "s1")
    assert bad.returncode == 1
    assert "first bad sequence number 5" in bad.stdout

    missing = cli(tmp_path, "verify", "nope")
    assert missing.returncode == 2 and "no events" in missing.stderr


def test_audit_exports_and_offline_verification(tmp_path):
    ledger, key = make_ledger(tmp_path)
    ledger.close()
    created = cli(tmp_path, "session", "create", "--title", "审计", "--json")
    assert created.returncode == 0
    # the audited session must exist in the store; reuse its id for a fresh ledger chain
    sid = json.loads(created.stdout)["session_id"]
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    ledger.append_now(sid, Start("pub"), 1000)
    ledger.append_now(sid, Join("member:9", "p", "token", "127.0.0.1", True), 1200)
    seq, head = ledger.head(sid)
    ledger.save_checkpoint(key.sign(sid, seq, head, 2000, True))
    ledger.close()

    out = tmp_path / "a.json"
    done = cli(tmp_path, "audit", sid, "--format", "json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["events"][-1]["kind"] == "export"  # the export recorded itself
    pub = cli(tmp_path, "keys", "show").stdout.split()[2]
    ok = cli(tmp_path, "verify", "--export", str(out), "--pubkey", pub)
    assert ok.returncode == 0, ok.stdout
    assert "not signed" not in ok.stdout  # the export's own event was signed with it
    doc["events"][1]["data"]["audio_only"] = False
    out.write_text(json.dumps(doc))
    bad = cli(tmp_path, "verify", "--export", str(out), "--pubkey", pub)
    assert bad.returncode == 1 and "first bad sequence number 2" in bad.stdout

    for fmt in ("csv", "xlsx"):
        path = tmp_path / f"a.{fmt}"
        assert cli(tmp_path, "audit", sid, "--format", fmt, "--out", str(path)).returncode == 0
        assert path.stat().st_size > 0
    assert (tmp_path / "a.csv").read_bytes().startswith("\ufeff".encode())
    assert (tmp_path / "a.xlsx").read_bytes()[:2] == b"PK"


async def test_sigkill_mid_session_loses_no_acknowledged_event(tmp_path):
    links = json.loads(cli(tmp_path, "session", "create", "--title", "崩溃", "--json").stdout)
    sid = links["session_id"]
    port = free_port()
    env = env_for(tmp_path, LR_PORT=str(port), LR_CHECKPOINT_INTERVAL="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--workers", "1"], cwd=ROOT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    acked: list[int] = []
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_health, port)
        async with aiohttp.ClientSession() as http:
            member = cli(tmp_path, "token", "member", "--session", sid, "--subject", "M7")
            token = member.stdout.strip()
            pub = await publish(
                http, url, sid, links["lecturer_token"], [ToneAudioTrack(), PatternVideoTrack()]
            )
            v = await watch(http, url, sid, token)
            await v.wait_frames("video", 5, timeout=15)
            deadline = time.monotonic() + 15
            while len(acked) < 4 and time.monotonic() < deadline:
                status, body = await v.heartbeat(http)
                if status == 200:
                    acked.append(body["seq"])
                await v.wait_frames("video", v.stats["video"].frames + 8, timeout=10)
            assert len(acked) == 4
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            await v.stop()
            await pub.stop()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)

    # restart: the open interval is closed at its last evidence, reason server_restart
    restarted = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--workers", "1"], cwd=ROOT, env=env
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_health, port)
    finally:
        restarted.terminate()
        restarted.wait(10)
    verified = cli(tmp_path, "verify", sid)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    try:
        rows = list(ledger.rows(sid))
    finally:
        ledger.close()
    seqs = {r.seq for r in rows}
    assert set(acked) <= seqs
    last_beat = max((r for r in rows if r.kind == "heartbeat"), key=lambda r: r.seq)
    leaves = [r for r in rows if r.kind == "leave"]
    assert [r.data["reason"] for r in leaves] == ["server_restart"]
    assert leaves[0].at_ms == last_beat.at_ms  # closed at its last evidence


def test_a_session_created_from_the_cli_with_its_own_credit_rule_records_it(tmp_path):
    created = cli(
        tmp_path,
        "session",
        "create",
        "--title",
        "七成",
        "--json",
        "--credit-threshold",
        "0.7",
        "--no-replay-credit",
    )
    assert created.returncode == 0, created.stderr
    sid = json.loads(created.stdout)["session_id"]
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    try:
        (first,) = ledger.rows(sid)
        assert (first.kind, first.data) == (
            "policy",
            {
                "by": "cli",
                "threshold_percent": 70,
                "replay_credit": False,
                "rollcalls_required": 0,
                "replay_without_rollcalls": False,
            },
        )
    finally:
        ledger.close()
    checked = cli(tmp_path, "verify", sid)
    assert checked.returncode == 0 and "not signed" not in checked.stdout, checked.stdout
    bad = cli(tmp_path, "session", "create", "--title", "x", "--credit-threshold", "1.5")
    assert bad.returncode == 2 and "credit_threshold" in bad.stderr
