"""What the server keeps on disk about people, and its secrets: only their owner reads them."""

from __future__ import annotations

import stat

import pytest

from server.auth import load_or_create_secret
from server.store import Member, Store
from tests.test_cli import run_cli


def others_may_read(path) -> bool:
    return bool(path.stat().st_mode & 0o077)


async def test_every_file_the_relay_writes_of_names_and_attendance_is_0600(relay):
    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("FM1", "甲", "团堡镇", "13800000001")])
    admin = relay.token("admin", None)
    url = f"{relay.base_url}/api/sessions/{sid}/links?format=csv"  # a signed export event
    async with relay.http.get(url, headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
    data = relay.config.data_dir
    expected = {"relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm", "checkpoints.jsonl"}
    expected |= {relay.config.ledger_path.name, relay.config.ledger_path.name + "-wal"}
    files = {p.name: p for p in data.rglob("*") if p.is_file()}
    assert expected <= files.keys(), sorted(files)
    shared = {name: oct(stat.S_IMODE(p.stat().st_mode)) for name, p in files.items()}
    assert not {n: m for n, m in shared.items() if others_may_read(files[n])}, shared


def test_a_database_an_older_install_left_0644_is_made_0600(tmp_path):
    path = tmp_path / "data" / "relay.sqlite3"
    Store(path).close()
    for each in (path, path.with_name(path.name + "-wal")):
        if each.exists():
            each.chmod(0o644)
    Store(path).close()
    assert not others_may_read(path)


def test_a_secret_key_others_may_read_is_refused_at_start(tmp_path):
    data = tmp_path / "data"
    secret = load_or_create_secret(data)
    assert not others_may_read(data / "secret.key")
    assert load_or_create_secret(data) == secret
    (data / "secret.key").chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_secret(data)
    served = run_cli(tmp_path, "serve", "--data", str(data), "--port", "0")
    assert served.returncode == 1, served.stderr
    assert str(data / "secret.key") in served.stderr and "chmod 600" in served.stderr
    assert "Traceback" not in served.stderr
