"""Personal watch links from the admin page: a file per session (or township), recorded in
the session's ledger as an export of personal data."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlparse

from server.store import Member


async def fetch(relay, sid: str, token: str, query: str = "") -> tuple[int, dict, bytes]:
    url = f"{relay.base_url}/api/sessions/{sid}/links{query}"
    async with relay.http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_the_admin_downloads_each_members_personal_link(relay):
    sid = relay.new_session()["session_id"]
    admin = relay.token("admin", None, "组织部")
    status, _, body = await fetch(relay, sid, admin)
    assert status == 409 and b"roster is empty" in body  # nothing to hand out yet
    relay.state.store.upsert_members(
        [
            Member("L1", "甲", "团堡镇", "13800000001"),
            Member("L2", "乙", "汪营镇"),
            Member("L3", "丙", "团堡镇"),
        ]
    )
    before = relay.state.attendance.ledger.head(sid)[0]
    status, headers, body = await fetch(relay, sid, admin, "?format=csv&township=团堡镇")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["党员编号", "姓名", "乡镇", "观看链接"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("L1", "甲", "团堡镇"),
        ("L3", "丙", "团堡镇"),
    ]
    assert "13800000001" not in body.decode("utf-8-sig")  # a link needs no phone number
    link = urlparse(rows[1][3])
    assert f"{link.scheme}://{link.netloc}" == relay.base_url and link.path == "/watch"
    claims = relay.state.signer.verify(parse_qs(link.query)["token"][0])
    assert (claims.role, claims.session, claims.subject) == ("member", sid, "L1")
    # the link plays as that member: their own record answers to it
    async with relay.http.get(
        f"{relay.base_url}/api/sessions/{sid}/me",
        headers={"Authorization": f"Bearer {parse_qs(link.query)['token'][0]}"},
    ) as resp:
        assert resp.status == 200 and (await resp.json())["member_id"] == "L1"
    status, headers, body = await fetch(relay, sid, admin, "?format=xlsx")
    assert status == 200 and body[:2] == b"PK"
    # each file handed out is in the ledger (who, what), and signed at once
    rows = relay.state.attendance.ledger.rows(sid)
    exports = [(r.data["by"], r.data["format"]) for r in rows if r.seq > before]
    assert exports == [("组织部", "links-csv"), ("组织部", "links-xlsx")]
    signed = max(c.seq for c in relay.state.attendance.all_checkpoints(sid))
    assert signed == relay.state.attendance.ledger.head(sid)[0]


async def test_personal_links_are_for_the_admin_alone_and_bad_asks_are_refused(relay):
    sid = relay.new_session()["session_id"]
    relay.state.store.upsert_members([Member("L1", "甲", "团堡镇")])
    admin = relay.token("admin", None)
    for who in ("member", "room", "lecturer", "viewer"):
        status, _, _ = await fetch(relay, sid, relay.token(who, sid, "L1"))
        assert status == 403, who
    assert (await fetch(relay, sid, "not-a-token"))[0] == 401
    status, _, body = await fetch(relay, sid, admin, "?format=pdf")
    assert status == 400 and b"csv or xlsx" in body
    status, _, body = await fetch(relay, sid, admin, "?township=火星乡")
    assert status == 404 and "火星乡" in json.loads(body)["error"]
    assert (await fetch(relay, "nope", admin))[0] == 404
    assert relay.state.attendance.ledger.head(sid)[0] == 0  # nothing handed out, nothing recorded
