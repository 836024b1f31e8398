"""Hostile input from any role: huge numbers, wrong types, wrong shapes. Each is a 400 with a
reason (issue 24, item 12), never a 500: the relay reads them, it does not trip over them."""

from __future__ import annotations

import pytest

from server.programme.store import school_id
from server.store import TOWNSHIPS
from tests.calls import call

TUANBAO = school_id(TOWNSHIPS.index("团堡镇"))
HUGE = 99999999999999999999  # past SQLite's 64-bit integers
TEACHER = {"name": "向明", "organisation": "利川市委党校", "tier": "city", "school_id": "city"}
COURSE = {"title": "学习全会精神", "topic": "理论学习", "class_hours": 2}
TASK = {
    "theme": "冬训",
    "class_hours": 2,
    "townships": ["团堡镇"],
    "period_from": "2026-12-01",
    "period_to": "2026-12-31",
}
ORDER = {"starts_at": "2026-12-05T09:00+08:00", "ends_at": "2026-12-05T11:00+08:00"}


@pytest.fixture
async def seeded(relay):
    """A relay with a session, a teacher, a course, a task and each role's token."""
    links = relay.new_session()
    sid = links["session_id"]
    admin = relay.token("admin", None)
    teacher = (await call(relay, "POST", "/api/teachers", admin, TEACHER))[1]
    course = (await call(relay, "POST", "/api/courses", admin, COURSE))[1]
    task = (await call(relay, "POST", "/api/tasks", admin, TASK))[1]
    tokens = {
        "admin": admin,
        "school": relay.token("school", None, TUANBAO),
        "lecturer": links["lecturer_token"],
        "viewer": links["viewer_token"],
        "room": links["rooms"][0]["token"],
        "member": relay.token("member", sid, "m-1"),
        None: None,
    }
    names = {"sid": sid, "t": teacher["id"], "c": course["id"], "task": task["id"]}
    return relay, tokens, names


def order(**fields) -> dict:
    return {"teacher_id": 1, "course_id": 1, **ORDER, **fields}


# (method, path, role, body, status): a str body is sent as raw JSON text
CASES = [
    # a question id past 64 bits in the moderation URL
    ("POST", f"/api/sessions/{{sid}}/questions/{HUGE}/hide", "lecturer", None, 400),
    ("POST", f"/api/sessions/{{sid}}/questions/-{HUGE}/pin", "admin", None, 400),
    # ids in paths and queries past 64 bits
    ("PATCH", f"/api/teachers/{HUGE}", "admin", {"name": "x"}, 400),
    ("DELETE", f"/api/courses/{HUGE}", "admin", None, 400),
    ("POST", f"/api/tasks/{HUGE}/filings", "school", order(), 400),
    ("POST", f"/api/trainings/{HUGE}/approve", "admin", {}, 400),
    ("GET", f"/api/courses?teacher={HUGE}", "school", None, 400),
    ("GET", f"/api/rotation?year={HUGE}", "admin", None, 400),
    ("GET", f"/api/courses/{HUGE}/replays", "school", None, 400),
    # teacher_id / course_id: Infinity, 1e400, huge, negative huge, booleans, fractions
    ("POST", "/api/orders", "school", '{"teacher_id": Infinity, "course_id": 1}', 400),
    ("POST", "/api/orders", "school", '{"teacher_id": 1e400, "course_id": 1}', 400),
    ("POST", "/api/orders", "school", order(teacher_id=HUGE), 400),
    ("POST", "/api/orders", "school", order(teacher_id=-HUGE), 400),
    ("POST", "/api/orders", "school", order(teacher_id=True), 400),
    ("POST", "/api/orders", "school", order(course_id=1.5), 400),
    ("POST", "/api/orders", "school", order(course_id=[1]), 400),
    ("POST", "/api/tasks/{task}/filings", "school", order(teacher_id=HUGE), 400),
    ("POST", "/api/orders", "school", order(audience={"townships": 5}), 400),
    ("POST", "/api/orders", "school", order(audience={"townships": [{}]}), 400),
    ("POST", "/api/orders", "school", order(starts_at=5), 400),
    # teacher bodies of the wrong types
    ("POST", "/api/teachers", "admin", {**TEACHER, "name": {}}, 400),
    ("POST", "/api/teachers", "admin", {**TEACHER, "name": None}, 400),
    ("POST", "/api/teachers", "admin", {**TEACHER, "organisation": 5}, 400),
    ("POST", "/api/teachers", "admin", {**TEACHER, "contact": []}, 400),
    ("PATCH", "/api/teachers/{t}", "admin", {"name": {}}, 400),
    ("PATCH", "/api/teachers/{t}", "admin", {"name": None}, 400),
    ("PATCH", "/api/teachers/{t}", "admin", {"contact": 5}, 400),
    ("PATCH", "/api/teachers/{t}", "admin", {"school_id": {}}, 400),
    # course bodies: teacher_ids, class_hours, quiz items
    ("POST", "/api/courses", "admin", {**COURSE, "teacher_ids": 5}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "teacher_ids": [True]}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "teacher_ids": [HUGE]}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "teacher_ids": {"a": 1}}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "class_hours": "nan"}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "class_hours": True}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "title": {}}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "materials": [1]}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "quiz": 5}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "quiz": {"question": "q"}}, 400),
    ("POST", "/api/courses", "admin", {**COURSE, "quiz": [[]]}, 400),
    (
        "POST",
        "/api/courses",
        "admin",
        {**COURSE, "quiz": [{"question": "q", "options": [{}, []], "answer": 0}]},
        400,
    ),
    (
        "POST",
        "/api/courses",
        "admin",
        {**COURSE, "quiz": [{"question": "q", "options": ["a", "b"], "answer": True}]},
        400,
    ),
    ("PATCH", "/api/courses/{c}", "admin", {"teacher_ids": 5}, 400),
    ("PATCH", "/api/courses/{c}", "admin", {"teacher_ids": [None]}, 400),
    ("PATCH", "/api/courses/{c}", "admin", {"class_hours": "nan"}, 400),
    ("PATCH", "/api/courses/{c}", "admin", {"title": {}}, 400),
    ("PATCH", "/api/courses/{c}", "admin", {"materials": 5}, 400),
    # task bodies
    ("POST", "/api/tasks", "admin", {**TASK, "townships": [{}]}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "townships": [["团堡镇"]]}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "class_hours": "nan"}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "class_hours": "inf"}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "class_hours": HUGE}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "categories": 5}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "categories": [{}]}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "theme": {}}, 400),
    ("POST", "/api/tasks", "admin", {**TASK, "method": 5}, 400),
    # session and Q&A text of the wrong types
    ("POST", "/api/sessions", "admin", {"title": {}}, 400),
    ("POST", "/api/sessions", "admin", {"title": "t", "video_codec": ["VP8"]}, 400),
    ("POST", "/api/sessions/{sid}/questions", "member", {"text": {"a": 1}}, 400),
    ("POST", "/api/sessions/{sid}/questions/1/answer", "lecturer", {"answer": []}, 400),
    ("POST", "/api/sessions/{sid}/feedback", "viewer", {"rating": 5, "comment": {}}, 400),
    ("POST", "/api/sessions/{sid}/floor", "lecturer", {"who": {}}, 400),
    ("POST", "/api/sessions/{sid}/checkin", "room", {"member_id": {}}, 400),
    ("POST", "/api/sessions/{sid}/identify", "viewer", {"member_id": 1, "name": []}, 400),
    ("POST", "/api/rooms/join", None, {"code": 12345678}, 400),
]


@pytest.mark.parametrize(("method", "path", "role", "body", "status"), CASES)
async def test_hostile_body_or_id_is_a_400_with_a_reason(seeded, method, path, role, body, status):
    relay, tokens, names = seeded
    url = path.format(**names)
    if isinstance(body, str):
        got, answer = await call(
            relay, method, url, tokens[role], data=body.encode(), ctype="application/json"
        )
    else:
        got, answer = await call(relay, method, url, tokens[role], json=body)
    assert (got, answer.get("status")) == (status, status), answer
    assert answer["error"] and "internal" not in answer["error"]


async def test_an_empty_teacher_patch_changes_nothing(seeded):
    """Found by tests/test_fuzz_api.py: ``{}`` made ``UPDATE teachers SET  WHERE`` (a 500)."""
    relay, tokens, names = seeded
    status, teacher = await call(relay, "PATCH", f"/api/teachers/{names['t']}", tokens["admin"], {})
    assert (status, teacher["name"]) == (200, TEACHER["name"]), teacher


# every route that reads a JSON body, with a role that gets as far as reading it
JSON_ROUTES = [
    ("POST", "/api/sessions", "admin"),
    ("POST", "/api/rooms/join", None),
    ("POST", "/api/teachers", "admin"),
    ("PATCH", "/api/teachers/{t}", "admin"),
    ("POST", "/api/courses", "admin"),
    ("PATCH", "/api/courses/{c}", "admin"),
    ("POST", "/api/tasks", "admin"),
    ("POST", "/api/tasks/{task}/filings", "school"),
    ("POST", "/api/orders", "school"),
    ("POST", "/api/sessions/{sid}/feedback", "viewer"),
    ("POST", "/api/sessions/{sid}/questions", "member"),
    ("POST", "/api/sessions/{sid}/questions/1/answer", "lecturer"),
    ("POST", "/api/sessions/{sid}/floor", "lecturer"),
    ("PATCH", "/api/sessions/{sid}/floor", "lecturer"),
    ("POST", "/api/sessions/{sid}/headcount", "room"),
    ("POST", "/api/sessions/{sid}/checkin", "room"),
    ("POST", "/api/sessions/{sid}/identify", "viewer"),
    ("PATCH", "/api/sessions/{sid}/credit-rule", "admin"),
    ("POST", "/api/sessions/{sid}/replay/progress", "member"),
]


@pytest.mark.parametrize("body", ["[]", '[{"title": "x"}]', '"text"', "5", "null", "true"])
@pytest.mark.parametrize(("method", "path", "role"), JSON_ROUTES)
async def test_a_json_body_that_is_not_an_object_is_a_400(seeded, method, path, role, body):
    relay, tokens, names = seeded
    status, answer = await call(
        relay,
        method,
        path.format(**names),
        tokens[role],
        data=body.encode(),
        ctype="application/json",
    )
    assert (status, answer["error"]) == (400, "body must be a JSON object"), answer
