"""Q&A: members and rooms ask, the lecturer moderates, the ledger keeps it all."""

from __future__ import annotations

from server.store import Member
from tests.calls import call


async def test_questions_are_moderated_and_recorded(relay):
    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members(
        [Member("Q1", "周一", "团堡镇"), Member("Q2", "吴二", "团堡镇")]
    )
    q1 = relay.token("member", sid, "Q1")
    q2 = relay.token("member", sid, "Q2")
    room = links["rooms"][8]["token"]
    lecturer = links["lecturer_token"]
    base = f"/api/sessions/{sid}/questions"

    status, a = await call(relay, "POST", base, q1, {"text": "茶产业补贴怎么申请？"})
    assert status == 201
    status, b = await call(relay, "POST", base, q2, {"text": "广告内容"})
    status, c = await call(relay, "POST", base, room, {"text": "我们教室有三位老党员想发言"})
    assert (await call(relay, "POST", base, links["viewer_token"], {"text": "x"}))[0] == 403
    assert (await call(relay, "POST", base, q1, {"text": " "}))[0] == 400
    assert (await call(relay, "POST", base, q1, {"text": "长" * 501}))[0] == 413

    assert (await call(relay, "POST", f"{base}/{b['id']}/hide", q1))[0] == 403  # members don't
    assert (await call(relay, "POST", f"{base}/{b['id']}/hide", lecturer))[0] == 200
    assert (await call(relay, "POST", f"{base}/{c['id']}/pin", lecturer))[0] == 200
    status, _ = await call(
        relay, "POST", f"{base}/{a['id']}/answer", lecturer, {"answer": "向乡镇农业服务中心申报"}
    )
    assert status == 200
    assert (await call(relay, "POST", f"{base}/999/pin", lecturer))[0] == 404

    status, seen = await call(relay, "GET", base, q1)
    assert [q["id"] for q in seen] == [c["id"], a["id"]]  # pinned first; hidden gone
    assert seen[1]["answer"] == "向乡镇农业服务中心申报" and seen[1]["mine"]
    assert seen[0]["name"].endswith("教室") and "participant" not in seen[0]
    status, own = await call(relay, "GET", base, q2)
    assert b["id"] in [q["id"] for q in own]  # the asker still sees their own hidden question
    status, everything = await call(relay, "GET", base, lecturer)
    assert {q["id"]: q["hidden"] for q in everything}[b["id"]] is True

    kinds = [r.kind for r in relay.state.attendance.ledger.rows(sid)]
    assert kinds.count("question") == 3 and kinds.count("moderation") == 3
