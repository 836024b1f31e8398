"""``lecture-relay backup`` and ``restore`` (issue 27): a backup taken while 50 viewers heartbeat
restores into a fresh directory whose ledger verifies and holds the newest event acknowledged
before it began; a damaged backup or a non-empty target is refused."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.client import watch
from tests.test_attendance import joined, lecture
from tests.test_cli import ROOT
from tests.waiting import until

# aiortc peers over loopback, each heartbeating as fast as the relay takes; sound only, so
# that 50 of them fit beside the relay on two cores (their video decoders would not)
VIEWERS = 50


async def cli(relay, *args: str) -> subprocess.CompletedProcess:
    """The real command, in a process of its own, while this loop serves the relay."""
    env = {**os.environ, "LR_LEDGER_KEY": str(relay.config.ledger_key_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def row(path: Path, sid: str, seq: int) -> tuple | None:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT seq, hash FROM events WHERE session = ? AND seq = ?", (sid, seq)
        ).fetchone()
    finally:
        db.close()


async def test_a_backup_while_viewers_heartbeat_restores_and_verifies(relay, tmp_path):
    links = relay.new_session()
    sid = links["session_id"]
    ledger = relay.state.attendance.ledger
    pub = await lecture(relay, links)
    viewers = []
    try:
        for i in range(VIEWERS):
            token = relay.token("member", sid, f"M{i:03d}")
            viewers.append(await watch(relay.http, relay.base_url, sid, token, kinds=("audio",)))
        for v in viewers:
            await joined(relay, v)
        beats = 0
        stop = asyncio.Event()

        async def beat(v) -> None:
            nonlocal beats
            while not stop.is_set():
                status, _ = await v.heartbeat(relay.http)
                beats += status == 200
                await asyncio.sleep(0.02)  # back to back, as fast as answered

        beating = [asyncio.ensure_future(beat(v)) for v in viewers]
        try:
            # heartbeats answered (each durable before its answer)
            await until(lambda: beats >= VIEWERS, 20, 0.05, "no heartbeat was answered")
            acked_seq, acked_hash = ledger.head(sid)  # every event answered so far is in it
            before = beats
            made = await cli(relay, "backup", "--out", str(tmp_path / "bk"),
                             "--data", str(relay.config.data_dir))  # fmt: skip
            during = beats
        finally:
            stop.set()
            await asyncio.gather(*beating)
        assert made.returncode == 0, made.stderr
        assert "the ledger key is not in it" in made.stdout
        assert during > before, (before, during)  # heartbeats answered during the backup
    finally:
        for v in viewers:
            await v.stop(relay.http)
        await pub.stop()

    backup = tmp_path / "bk"
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"relay.sqlite3", "ledger.sqlite3"}  # LR_SECRET: no file
    assert not any("ledger" in name and name.endswith(".pem") for name in os.listdir(backup))
    assert manifest["ledger_heads"][sid][0] >= acked_seq
    assert all(oct((backup / n).stat().st_mode)[-3:] == "600" for n in manifest["files"])

    fresh = tmp_path / "fresh"
    restored = await cli(relay, "restore", str(backup), "--data", str(fresh))
    assert restored.returncode == 0, restored.stderr
    assert row(fresh / "ledger.sqlite3", sid, acked_seq) == (acked_seq, acked_hash)
    checked = await cli(relay, "verify", sid, "--data", str(fresh))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = await cli(relay, "restore", str(backup), "--data", str(fresh))
    assert again.returncode == 2 and "not empty" in again.stderr  # nothing overwritten
    (backup / "relay.sqlite3").write_bytes(b"damaged")
    damaged = await cli(relay, "restore", str(backup), "--data", str(tmp_path / "other"))
    assert damaged.returncode == 2 and "differs from the manifest" in damaged.stderr
    assert not (tmp_path / "other").exists()
