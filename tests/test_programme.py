"""The training programme through its HTTP API, refusals included."""

from __future__ import annotations

from server.attendance.events import Heartbeat, Join, Start
from server.attendance.ledger import now_ms
from server.programme.store import school_id
from server.store import TOWNSHIPS, Member
from tests.calls import call

TUANBAO = school_id(TOWNSHIPS.index("团堡镇"))
MOUDAO = school_id(TOWNSHIPS.index("谋道镇"))


async def libraries(relay, admin):
    status, t1 = await call(
        relay,
        "POST",
        "/api/teachers",
        admin,
        {
            "name": "向明",
            "organisation": "利川市委党校",
            "tier": "city",
            "school_id": "city",
            "tags": ["党史", "理论"],
            "contact": "13900000001",
        },
    )
    assert status == 201
    status, t2 = await call(
        relay,
        "POST",
        "/api/teachers",
        admin,
        {
            "name": "谭芳",
            "organisation": "团堡镇党校",
            "tier": "township",
            "school_id": TUANBAO,
            "tags": ["乡村振兴"],
        },
    )
    status, course = await call(
        relay,
        "POST",
        "/api/courses",
        admin,
        {
            "title": "学习二十届四中全会精神",
            "topic": "理论学习",
            "class_hours": 2,
            "teacher_ids": [t1["id"]],
            "quiz": [{"question": "全会在哪一年召开？", "options": ["2024", "2025"], "answer": 1}],
        },
    )
    assert status == 201
    return t1, t2, course


async def test_libraries_search_hide_contacts_from_schools_and_import_with_row_errors(relay):
    admin = relay.token("admin", None)
    school = relay.token("school", None, TUANBAO)
    t1, _, course = await libraries(relay, admin)
    status, found = await call(relay, "GET", "/api/teachers?tag=党史", admin)
    assert [t["name"] for t in found] == ["向明"] and found[0]["contact"] == "13900000001"
    status, found = await call(relay, "GET", "/api/teachers?q=向", school)
    assert status == 200 and "contact" not in found[0]
    status, found = await call(relay, "GET", f"/api/courses?teacher={t1['id']}", school)
    assert [c["title"] for c in found] == [course["title"]]
    assert "answer" not in found[0]["quiz"][0]  # schools never see the quiz answers
    assert (await call(relay, "POST", "/api/teachers", school, {"name": "x"}))[0] == 403

    csv = (
        "姓名,单位,层级,所属党校,专长,联系方式\n"
        "甲,忠路镇党校,乡镇,忠路镇党校,法治;党建,\n"
        ",无名单位,乡镇,忠路镇,,\n"
        "乙,某单位,省级,忠路镇,,\n"
        "丙,某单位,市级,火星党校,,\n"
    )
    status, result = await call(
        relay, "POST", "/api/teachers/import", admin, data=csv.encode(), ctype="text/csv"
    )
    assert status == 200 and result["imported"] == 1
    assert [e["row"] for e in result["errors"]] == [3, 4, 5]
    courses = (
        "课程名称,专题,课时,授课教师\n法治乡村,法治,1.5,甲\n空课,党建,0,甲\n外请,党建,1,无此人\n"
    )
    status, result = await call(
        relay, "POST", "/api/courses/import", admin, data=courses.encode(), ctype="text/csv"
    )
    assert result["imported"] == 1 and [e["row"] for e in result["errors"]] == [3, 4]
    status, _ = await call(
        relay, "POST", "/api/courses/import", admin, data=b"x", ctype="application/pdf"
    )
    assert status == 415


async def test_assigned_training_from_task_to_approved_session_with_its_refusals(relay):
    admin = relay.token("admin", None)
    tuanbao = relay.token("school", None, TUANBAO)
    moudao = relay.token("school", None, MOUDAO)
    lichuan_other = relay.token("school", None, school_id(TOWNSHIPS.index("建南镇")))
    t1, _, course = await libraries(relay, admin)
    status, task = await call(
        relay,
        "POST",
        "/api/tasks",
        admin,
        {
            "theme": "冬训：学习全会精神",
            "class_hours": 2,
            "method": "直播",
            "townships": ["团堡镇", "谋道镇"],
            "period_from": "2026-12-01",
            "period_to": "2026-12-31",
        },
    )
    assert status == 201 and TUANBAO in task["schools"]
    status, mine = await call(relay, "GET", "/api/tasks", tuanbao)
    assert [t["id"] for t in mine] == [task["id"]]
    assert (await call(relay, "GET", "/api/tasks", lichuan_other))[1] == []

    filing = {
        "teacher_id": t1["id"],
        "course_id": course["id"],
        "starts_at": "2026-12-05T09:00+08:00",
        "ends_at": "2026-12-05T11:00+08:00",
    }
    status, training = await call(
        relay, "POST", f"/api/tasks/{task['id']}/filings", tuanbao, filing
    )
    assert status == 201 and training["state"] == "filed" and training["kind"] == "assigned"
    status, err = await call(
        relay, "POST", f"/api/tasks/{task['id']}/filings", lichuan_other, filing
    )
    assert status == 403 and "not issued" in err["error"]
    # the same teacher at an overlapping time: a double booking
    clash = dict(filing, starts_at="2026-12-05T10:00+08:00", ends_at="2026-12-05T12:00+08:00")
    status, err = await call(relay, "POST", f"/api/tasks/{task['id']}/filings", moudao, clash)
    assert status == 409 and "teacher" in err["error"]
    # a school cannot approve, not even its own request
    status, err = await call(relay, "POST", f"/api/trainings/{training['id']}/approve", tuanbao, {})
    assert status == 403 and "department" in err["error"]
    status, body = await call(relay, "POST", f"/api/trainings/{training['id']}/approve", admin, {})
    assert status == 200 and body["training"]["state"] == "approved"
    session = body["session"]
    assert [r["name"] for r in session["rooms"]] == ["团堡镇", "谋道镇"]
    assert session["title"].startswith("学习二十届四中全会精神")
    status, err = await call(relay, "POST", f"/api/trainings/{training['id']}/approve", admin, {})
    assert status == 409


async def test_ordered_training_rejected_with_a_reason_then_approved(relay):
    admin = relay.token("admin", None)
    moudao = relay.token("school", None, MOUDAO)
    _, t2, _ = await libraries(relay, admin)
    status, course = await call(
        relay,
        "POST",
        "/api/courses",
        admin,
        {
            "title": "产业振兴实务",
            "topic": "乡村振兴",
            "class_hours": 1,
            "teacher_ids": [t2["id"]],
        },
    )
    order = {
        "teacher_id": t2["id"],
        "course_id": course["id"],
        "starts_at": "2026-12-08T14:00+08:00",
        "ends_at": "2026-12-08T15:00+08:00",
        "audience": {"townships": ["南坪乡"], "categories": ["elderly"]},
    }
    status, first = await call(relay, "POST", "/api/orders", moudao, order)
    assert status == 201 and first["kind"] == "ordered"
    assert (await call(relay, "POST", "/api/orders", admin, order))[0] == 403
    status, err = await call(relay, "POST", f"/api/trainings/{first['id']}/reject", admin, {})
    assert status == 400 and "reason" in err["error"]
    status, rejected = await call(
        relay, "POST", f"/api/trainings/{first['id']}/reject", admin, {"reason": "时间与农忙冲突"}
    )
    assert rejected["state"] == "rejected" and rejected["reason"] == "时间与农忙冲突"
    later = dict(order, starts_at="2026-12-10T14:00+08:00", ends_at="2026-12-10T15:00+08:00")
    status, second = await call(relay, "POST", "/api/orders", moudao, later)
    status, body = await call(relay, "POST", f"/api/trainings/{second['id']}/approve", admin, {})
    assert status == 200
    assert [r["name"] for r in body["session"]["rooms"]] == ["谋道镇", "南坪乡"]
    # the same classroom at an overlapping time is a double booking too
    status, err = await call(relay, "POST", "/api/orders", moudao, dict(later, teacher_id=t2["id"]))
    assert status == 409


async def approved_session(relay, admin, school_token):
    t1, _, course = await libraries(relay, admin)
    status, training = await call(
        relay,
        "POST",
        "/api/orders",
        school_token,
        {
            "teacher_id": t1["id"],
            "course_id": course["id"],
            "starts_at": "2026-12-20T09:00+08:00",
            "ends_at": "2026-12-20T11:00+08:00",
        },
    )
    status, body = await call(relay, "POST", f"/api/trainings/{training['id']}/approve", admin, {})
    return t1, course, body["session"]


async def lecture_watched(relay, admin, member: str, length_s: int, watched_s: int):
    """An approved training's lecture of ``length_s`` that ends now, of which ``member``
    watched the first ``watched_s`` (heartbeats every 10 s with both kinds of evidence)."""
    _, course, session = await approved_session(relay, admin, relay.token("school", None, TUANBAO))
    sid = session["session_id"]
    ledger = relay.state.attendance.ledger
    t = now_ms() - length_s * 1000
    await ledger.append(sid, Start("pub"), t)
    await ledger.append(sid, Join(f"member:{member}", "p1", "token", "127.0.0.1", False), t)
    for k in range(1, watched_s // 10 + 1):
        await ledger.append(
            sid, Heartbeat("p1", k * 250, True, True, k * 100, k * 50), t + k * 10_000
        )
    relay.state.attendance._started.discard(sid)
    assert (await call(relay, "POST", f"/api/sessions/{sid}/end", admin, {}))[0] == 200
    return course, sid


async def test_feedback_with_quiz_scores_per_session_teacher_and_course(relay):
    admin = relay.token("admin", None)
    t1, course, session = await approved_session(relay, admin, relay.token("school", None, TUANBAO))
    sid = session["session_id"]
    a = relay.token("member", sid, "F1")
    b = relay.token("member", sid, "F2")
    status, got = await call(
        relay,
        "POST",
        f"/api/sessions/{sid}/feedback",
        a,
        {"rating": 5, "comment": "讲得透彻", "answers": [1]},
    )
    assert status == 201 and got["score"] == 1.0
    assert (
        await call(relay, "POST", f"/api/sessions/{sid}/feedback", a, {"rating": 4, "answers": [1]})
    )[0] == 409
    assert (await call(relay, "POST", f"/api/sessions/{sid}/feedback", b, {"rating": 9}))[0] == 400
    status, got = await call(
        relay, "POST", f"/api/sessions/{sid}/feedback", b, {"rating": 3, "answers": [0]}
    )
    assert got["score"] == 0.0
    for query in (f"session={sid}", f"teacher={t1['id']}", f"course={course['id']}"):
        status, res = await call(relay, "GET", f"/api/feedback?{query}", admin)
        assert res["count"] == 2 and res["average_rating"] == 4 and res["average_score"] == 0.5
        assert res["comments"] == ["讲得透彻"]
    assert (await call(relay, "GET", f"/api/feedback?session={sid}", a))[0] == 403


async def test_credited_attendance_adds_class_hours_and_the_rotation_shows_who_is_behind(relay):
    admin = relay.token("admin", None)
    store = relay.state.store
    store.upsert_members([Member("C1", "勤学", "团堡镇"), Member("C2", "缺课", "团堡镇")])
    course, sid = await lecture_watched(relay, admin, "C1", 95, 90)
    me = relay.token("member", sid, "C1")
    status, mine = await call(relay, "GET", "/api/members/C1/credits", me)
    assert status == 200 and mine["hours"] == course["class_hours"]
    assert (await call(relay, "GET", "/api/members/C2/credits", me))[0] == 403
    status, rot = await call(relay, "GET", "/api/rotation", admin)
    row = next(r for r in rot["townships"] if r["township"] == "团堡镇")
    assert row["members"] == 2 and row["met"] == 0  # 2 hours of a 12-hour target
    assert row["classrooms"] == 1  # its school (the directory has no teaching point here)
    assert {b["member_id"]: b["hours"] for b in row["behind"]} == {"C1": 2, "C2": 0}


async def test_a_changed_credit_rule_is_a_ledger_event_and_works_the_hours_out_again(relay):
    """Lowered after the lecture, the share to watch credits a member who fell short; raised
    again, it takes the hours away. Each change is in the session's signed ledger."""
    admin = relay.token("admin", None)
    relay.state.store.upsert_members([Member("D1", "半场", "团堡镇")])
    course, sid = await lecture_watched(relay, admin, "D1", 100, 60)
    ledger = relay.state.attendance.ledger
    me = relay.token("member", sid, "D1")

    async def hours() -> float:
        return (await call(relay, "GET", "/api/members/D1/credits", me))[1]["hours"]

    assert await hours() == 0
    rule = f"/api/sessions/{sid}/credit-rule"
    status, got = await call(relay, "PATCH", rule, admin, {"credit_threshold": 0.5})
    assert status == 200 and got["changed"] and got["credited"] == 1
    assert (got["credit_threshold"], got["replay_credit"]) == (0.5, True)
    assert await hours() == course["class_hours"]
    status, mine = await call(relay, "GET", f"/api/sessions/{sid}/me", me)
    assert mine["credited"] and mine["lecture"]["required_seconds"] == 50
    status, got = await call(
        relay, "PATCH", rule, admin, {"credit_threshold": 0.9, "replay_credit": False}
    )
    assert status == 200 and got["credited"] == 0
    assert await hours() == 0
    # the same rule again changes nothing and records nothing
    assert not (await call(relay, "PATCH", rule, admin, {"credit_threshold": 0.9}))[1]["changed"]
    policies = [r.data for r in ledger.rows(sid) if r.kind == "policy"]
    who = str(relay.state.signer.verify(admin).subject or "admin")
    calls = {"rollcalls_required": 0, "replay_without_rollcalls": False}  # no roll call asked
    assert policies == [
        {"by": who, "threshold_percent": 50, "replay_credit": True, **calls},
        {"by": who, "threshold_percent": 90, "replay_credit": False, **calls},
    ]
    signed = max(c.seq for c in relay.state.attendance.all_checkpoints(sid))
    assert signed == max(r.seq for r in ledger.rows(sid) if r.kind == "policy")
    # the ledger's rule is the one reports apply: a write to the store alone changes nothing
    relay.state.store.set_credit_threshold(sid, 0.1)
    assert not (await call(relay, "GET", f"/api/sessions/{sid}/me", me))[1]["credited"]
    status, audit = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
    assert (audit["credit_threshold"], audit["replay_credit"]) == (0.9, False)
    assert [c["threshold_percent"] for c in audit["policy_changes"]] == [50, 90]
    assert audit["verify"]["ok"]
    # refused: out of range, not in hundredths, not a number, nothing to change, wrong role
    for body in (
        {"credit_threshold": 0},
        {"credit_threshold": 1.5},
        {"credit_threshold": 0.805},
        {"credit_threshold": "80%"},
        {"credit_threshold": True},
        {"replay_credit": "yes"},
        {"title": "x"},
    ):
        status, err = await call(relay, "PATCH", rule, admin, body)
        assert status == 400 and err["error"], body
    assert (await call(relay, "PATCH", rule, me, {"credit_threshold": 0.1}))[0] == 403
    assert (
        await call(relay, "PATCH", "/api/sessions/nope/credit-rule", admin, {"replay_credit": True})
    )[0] == 404
    assert [r.data for r in ledger.rows(sid) if r.kind == "policy"] == policies


async def test_a_session_created_with_its_own_credit_rule_records_it_first(relay):
    admin = relay.token("admin", None)
    body = {"title": "七成即可", "credit_threshold": 0.7, "replay_credit": False}
    status, created = await call(relay, "POST", "/api/sessions", admin, body)
    assert status == 201
    sid = created["session_id"]
    (first,) = relay.state.attendance.ledger.rows(sid)
    assert first.kind == "policy" and first.data["threshold_percent"] == 70
    me = relay.token("member", sid, "X1")
    terms = (await call(relay, "GET", f"/api/sessions/{sid}/me", me))[1]["lecture"]
    assert (terms["threshold"], terms["replay_credit"]) == (0.7, False)
    status, plain = await call(relay, "POST", "/api/sessions", admin, {"title": "默认"})
    assert list(relay.state.attendance.ledger.rows(plain["session_id"])) == []  # the default
    bad = {"title": "x", "credit_threshold": 2}
    assert (await call(relay, "POST", "/api/sessions", admin, bad))[0] == 400


async def test_libraries_can_be_edited_and_booked_entries_cannot_be_deleted(relay):
    admin = relay.token("admin", None)
    t1, t2, course = await libraries(relay, admin)
    status, t = await call(
        relay,
        "PATCH",
        f"/api/teachers/{t2['id']}",
        admin,
        {"tags": ["乡村振兴", "电商"], "contact": "13700000000"},
    )
    assert status == 200 and t["tags"] == ["乡村振兴", "电商"]
    assert (await call(relay, "PATCH", f"/api/teachers/{t2['id']}", admin, {"age": 3}))[0] == 400
    status, c = await call(
        relay,
        "PATCH",
        f"/api/courses/{course['id']}",
        admin,
        {"class_hours": 1.5, "teacher_ids": [t1["id"], t2["id"]]},
    )
    assert status == 200 and c["class_hours"] == 1.5 and c["teacher_ids"] == [t1["id"], t2["id"]]
    school = relay.token("school", None, TUANBAO)
    assert (await call(relay, "PATCH", f"/api/courses/{course['id']}", school, {}))[0] == 403
    await call(
        relay,
        "POST",
        "/api/orders",
        school,
        {
            "teacher_id": t2["id"],
            "course_id": course["id"],
            "starts_at": "2026-12-22T09:00+08:00",
            "ends_at": "2026-12-22T10:00+08:00",
        },
    )
    status, err = await call(relay, "DELETE", f"/api/courses/{course['id']}", admin)
    assert status == 409 and "booked" in err["error"]
    assert (await call(relay, "DELETE", f"/api/teachers/{t2['id']}", admin))[0] == 409
    status, other = await call(
        relay, "POST", "/api/courses", admin, {"title": "临时课", "topic": "其他", "class_hours": 1}
    )
    assert (await call(relay, "DELETE", f"/api/courses/{other['id']}", admin))[0] == 200
    assert (await call(relay, "DELETE", f"/api/courses/{other['id']}", admin))[0] == 404
