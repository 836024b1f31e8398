"""The CLI as a newcomer uses it: create a session, serve it, read its links."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.waiting import wait_health

ROOT = Path(__file__).resolve().parent.parent


def cli_env(tmp_path: Path, extra: dict | None = None) -> dict:
    """Keep the ledger key out of the user's home."""
    return {**os.environ, "LR_LEDGER_KEY": str(tmp_path / "keys" / "ledger.pem"), **(extra or {})}


def run_cli(tmp_path: Path, *args: str, env: dict | None = None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=cli_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_session_create_prints_tokens_rooms_and_urls(tmp_path):
    out = run_cli(
        tmp_path, "session", "create", "--title", "党史学习", "--data", str(tmp_path), "--json"
    )
    assert out.returncode == 0, out.stderr
    links = json.loads(out.stdout)
    assert links["title"] == "党史学习"
    assert len(links["rooms"]) == 15 and len({r["code"] for r in links["rooms"]}) == 15
    assert all(len(r["code"]) == 8 and r["token"] for r in links["rooms"])
    assert links["lecturer_token"] != links["viewer_token"]
    assert links["urls"]["watch"].startswith("http://127.0.0.1:8080/watch?session=")
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    listed = run_cli(tmp_path, "session", "list", "--data", str(tmp_path))
    assert links["session_id"] in listed.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_on_the_given_port_and_stops(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--workers",
            "1",
            "--port",
            str(port),
            "--data",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        assert wait_health(port) == {"ok": True}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/watch") as resp:
            assert "观看直播" in resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_a_missing_tls_certificate_clearly(tmp_path):
    out = run_cli(
        tmp_path,
        "serve",
        "--data",
        str(tmp_path),
        env={"LR_TLS_CERT": str(tmp_path / "none.pem"), "LR_TLS_KEY": str(tmp_path / "k.pem")},
    )
    assert out.returncode == 2
    assert "TLS certificate" in out.stderr


def test_demo_seeds_a_county_once_and_prints_every_page(tmp_path):
    first = run_cli(tmp_path, "demo", "--data", str(tmp_path))
    assert first.returncode == 0, first.stderr
    for page in ("/lecturer?", "/watch?", "/room", "/admin?", "/programme?", "/school?", "/audit?"):
        assert page in first.stdout
    again = run_cli(tmp_path, "demo", "--data", str(tmp_path))
    session = [line for line in first.stdout.splitlines() if "会话" in line]
    assert session and session == [line for line in again.stdout.splitlines() if "会话" in line]
    from server.programme.store import ProgrammeStore
    from server.store import Store

    store = Store(tmp_path / "relay.sqlite3")
    programme = ProgrammeStore(tmp_path / "relay.sqlite3")
    try:
        assert len(store.members()) == 15 * 20  # seeded once
        assert len(programme.teachers()) == 8 and len(programme.courses()) == 8
        assert len(programme.tasks()) == 1
    finally:
        programme.close()
        store.close()
