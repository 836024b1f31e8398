#!/usr/bin/env python3
"""A data directory as this release writes it, kept under tests/fixtures/ so that every later
release is tested opening it (tests/test_upgrade.py): the demo county (teachers, courses,
roster, a task), a lecture watched by a member and a room, a headcount, a check-in, ended with
its receipt. Run once per release, into a new folder:

    .venv/bin/python scripts/make_fixture.py tests/fixtures/data-<release>

It writes DIR/data (the data directory), DIR/keys/ledger.pem (a key made for this fixture
alone: it signs nothing real) and DIR/fixture.json (what the upgrade test checks). Everything
binds 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.demo import seed  # noqa: E402
from tests.calls import call  # noqa: E402
from tests.client import watch  # noqa: E402
from tests.conftest import running_relay  # noqa: E402
from tests.test_attendance import joined, lecture  # noqa: E402


async def make(out: Path) -> dict:
    async with running_relay(out) as relay:
        demo = seed(relay.config)
        links = relay.new_session("升级测试讲座")
        sid, admin = links["session_id"], relay.token("admin", None)
        room = links["rooms"][8]
        member = relay.state.store.members(room["name"])[0]
        pub = await lecture(relay, links)
        try:
            watchers = [
                await watch(
                    relay.http, relay.base_url, sid, relay.token("member", sid, "LC010001")
                ),
                await watch(relay.http, relay.base_url, sid, room["token"]),
            ]
            for w in watchers:
                await joined(relay, w)
                await w.wait_frames("video", 5, timeout=15)
            for _ in range(2):
                for w in watchers:
                    assert (await w.heartbeat(relay.http))[0] == 200
                await asyncio.sleep(1.1)
            path = f"/api/sessions/{sid}"
            assert (await call(relay, "POST", f"{path}/headcount", room["token"], {"count": 3}))[
                0
            ] == 200
            body = {"member_id": member.member_id}
            assert (await call(relay, "POST", f"{path}/checkin", room["token"], body))[0] == 200
            for w in watchers:
                await w.stop(relay.http)
        finally:
            await pub.stop()
        status, ended = await call(relay, "POST", f"{path}/end", admin, {})
        assert status == 200, ended
        seq, head = relay.state.attendance.ledger.head(sid)
        return {
            "release": subprocess.run(
                ["git", "describe", "--always"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
            "demo_session": demo["session_id"],
            "lecture": sid,
            "room": room["code"],
            "checked_in": member.member_id,
            "members": len(relay.state.store.members()),
            "receipt": ended["receipt"],
            "ledger_head": [seq, head],
        }


def main() -> int:
    out = Path(sys.argv[1])
    if out.exists():
        print(f"make_fixture: {out} exists; give a new folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True)
    facts = asyncio.run(make(out))
    (out / "fixture.json").write_text(json.dumps(facts, ensure_ascii=False, indent=2) + "\n")
    print(f"fixture: {out} ({facts['members']} members, lecture {facts['lecture']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
