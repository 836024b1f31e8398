"""A data directory written by an earlier release opens in this one with every record kept
and every chain verifying (issue 27). One fixture per release, made by scripts/make_fixture.py
under tests/fixtures/; a file newer than this release is refused with a clear reason."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.schema import STEPS, SchemaTooNew
from tests.calls import call
from tests.conftest import running_relay
from tests.test_cli import ROOT, cli_env

FIXTURES = sorted((Path(__file__).resolve().parent / "fixtures").glob("data-*"))


def copied(fixture: Path, tmp_path: Path) -> Path:
    """The fixture in a folder of the test's own, with the modes git does not keep."""
    target = tmp_path / fixture.name
    shutil.copytree(fixture, target)
    for path in [target / "data", target / "keys", *target.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    return target


def versions(data: Path) -> dict[str, int]:
    out = {}
    for name in STEPS:
        if (data / name).exists():
            db = sqlite3.connect(data / name)
            out[name] = db.execute("PRAGMA user_version").fetchone()[0]
            db.close()
    return out


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
async def test_an_earlier_release_s_data_opens_with_every_record_kept(fixture, tmp_path):
    assert FIXTURES, "no fixture under tests/fixtures"
    facts = json.loads((fixture / "fixture.json").read_text())
    root = copied(fixture, tmp_path)
    async with running_relay(root) as relay:
        admin = relay.token("admin", None)
        sid = facts["lecture"]
        assert versions(root / "data") == {
            n: len(s) for n, s in STEPS.items() if n != "outbox.sqlite3"
        }
        status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
        assert status == 200 and verdict["ok"] and verdict["unsigned"] == 0, verdict
        assert relay.state.attendance.final_receipt(sid) == facts["receipt"]
        assert relay.state.attendance.ledger.head(sid) == tuple(facts["ledger_head"])
        assert len(relay.state.store.members()) == facts["members"]
        status, audit = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
        assert status == 200 and audit["participants"] >= 2, audit
        (row,) = [r for r in audit["rooms"] if r["headcount"] is not None]
        assert (row["headcount"], row["checkins"]) == (3, 1)
        # schema 2: a room of a lecture made before the directory is its township's school
        rooms = relay.state.store.get_session(sid).rooms
        assert len(rooms) == 15 and all(r.township == r.name for r in rooms)
        assert row["township"] == row["room"] and row["kind"] == "school"
        assert len(relay.state.store.classrooms(kind="school")) == 15
        status, listed = await call(relay, "GET", "/api/teachers", admin)
        assert status == 200 and listed  # the demo's teacher pool
        assert relay.state.store.get_session(facts["demo_session"]) is not None


def test_a_file_from_a_newer_release_is_refused_clearly(tmp_path):
    root = copied(FIXTURES[-1], tmp_path)
    db = sqlite3.connect(root / "data" / "relay.sqlite3")
    db.execute(f"PRAGMA user_version = {len(STEPS['relay.sqlite3']) + 1}")
    db.close()
    from server.store import Store

    newer = len(STEPS["relay.sqlite3"]) + 1
    with pytest.raises(SchemaTooNew, match=f"relay.sqlite3 is at schema version {newer}"):
        Store(root / "data" / "relay.sqlite3")
    done = subprocess.run(
        [sys.executable, "-m", "server", "session", "list", "--data", str(root / "data")],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "written by a newer release" in done.stderr
    assert "Traceback" not in done.stderr
