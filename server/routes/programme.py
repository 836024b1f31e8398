"""The programme over HTTP: assigned and ordered training, approval, feedback, credit and the
rotation dashboard (the libraries: routes/library.py). Department admins decide; school
operators (role ``school``, subject = their school) file and order; nobody approves their
own request."""

from __future__ import annotations

import datetime

from aiohttp import web

from server.auth import Claims
from server.classrooms.directory import choose
from server.lectures.links import session_links
from server.lectures.service import create_lecture
from server.routes.bodies import read_json
from server.routes.fields import bounded_int, by_whom, sqlite_int, string_list, text_field
from server.routes.library import ADMIN, STAFF, hours_value
from server.state import STATE, AppState
from server.store import TOWNSHIPS, Classroom
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, ID, INT, NUM, STR, TEXT, WHEN, arr, documented, obj

FILING = obj(  # a filing or an order: teacher, course, time, audience
    ("teacher_id", "course_id", "starts_at", "ends_at"),
    teacher_id=ID,
    course_id=ID,
    starts_at=WHEN,
    ends_at=WHEN,
    audience=obj(townships=arr(STR)),
)
TRAINING_ANSWER = obj(("id", "state", "kind"), id=INT, state=STR, kind=STR)
TASK_HOURS = 1000  # a task's class hours, all its sessions together


# -- assigned and ordered training --------------------------------------------------------------
def _when(data: dict, key: str) -> float:
    value = data.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError(key)
        return datetime.datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError):
        raise HTTPProblem(400, f"{key} is an ISO date-time, e.g. 2026-12-01T09:00+08:00") from None


@documented(
    body=obj(
        ("theme", "class_hours", "period_from", "period_to"),
        theme=TEXT,
        class_hours={"type": "number", "minimum": 0.5, "maximum": TASK_HOURS},
        method=STR,
        townships=arr({"type": "string", "enum": list(TOWNSHIPS)}),
        categories=arr(STR),
        period_from=WHEN,
        period_to=WHEN,
    ),
    ok=201,
    answer=obj(("id", "schools"), id=INT, schools=arr(STR)),
)
async def add_task(request: web.Request) -> web.Response:
    """下单式: the department issues a task to township schools."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    data = await read_json(request)
    townships = data.get("townships") or list(TOWNSHIPS)
    reason = "townships are names of the county's townships"
    if not set(string_list(townships, "townships")) <= set(TOWNSHIPS):
        raise HTTPProblem(400, reason)
    categories = data.get("categories") or ["mobile", "elderly", "home-bound", "other"]
    categories = string_list(categories, "categories")
    hours = hours_value(
        data.get("class_hours"), TASK_HOURS, f"class_hours is a number to {TASK_HOURS}"
    )
    _when(data, "period_from")
    _when(data, "period_to")
    tid = state.programme.add_task(
        text_field(data, "theme"),
        hours,
        text_field(data, "method", False) or "直播",
        townships,
        categories,
        data["period_from"],
        data["period_to"],
    )
    return web.json_response(state.programme.task(tid), status=201)


@documented(answer=ARR_OBJ)
async def list_tasks(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    school = claims.subject if claims.role == "school" else None
    return web.json_response(state.programme.tasks(school))


def _file(state: AppState, claims: Claims, data: dict, kind: str, task_id: int | None):
    if claims.role != "school" or state.programme.school(claims.subject or "") is None:
        raise HTTPProblem(403, "only a school operator files or orders training")
    teacher = state.programme.teacher(sqlite_int(data.get("teacher_id"), "teacher_id"))
    course = state.programme.course(sqlite_int(data.get("course_id"), "course_id"))
    if teacher is None or course is None:
        raise HTTPProblem(404, "no such teacher or course in the libraries")
    if course.teacher_ids and teacher.id not in course.teacher_ids:
        raise HTTPProblem(400, f"{teacher.name} does not teach {course.title}")
    starts, ends = _when(data, "starts_at"), _when(data, "ends_at")
    if ends <= starts:
        raise HTTPProblem(400, "ends_at must be after starts_at")
    clash = state.programme.conflicts(teacher.id, claims.subject, starts, ends)
    if clash:
        c = clash[0]
        who = "the teacher" if c.teacher_id == teacher.id else "the classroom"
        raise HTTPProblem(409, f"{who} is already booked then (training {c.id})")
    audience = data.get("audience") or {}
    if not isinstance(audience, dict):
        raise HTTPProblem(400, "audience is an object")
    string_list(audience.get("townships") or [], "audience.townships")
    tid = state.programme.add_training(
        kind, task_id, claims.subject, teacher.id, course.id, starts, ends, audience
    )
    return state.programme.training(tid)


@documented(
    params={"id": ID},
    body=FILING,
    ok=201,
    errors=(409,),
    answer=TRAINING_ANSWER,
)
async def file_task(request: web.Request) -> web.Response:
    """A township school answers a task with teacher, course and time (备案)."""
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    task = state.programme.task(sqlite_int(request.match_info["id"], "task id"))
    if task is None:
        raise HTTPProblem(404, "no such task")
    if claims.role == "school" and claims.subject not in task["schools"]:
        raise HTTPProblem(403, "this task was not issued to your school")
    data = await read_json(request)
    training = _file(state, claims, data, "assigned", task["id"])
    return web.json_response(training.as_json(), status=201)


@documented(
    body=FILING,
    ok=201,
    errors=(409,),
    answer=TRAINING_ANSWER,
)
async def order(request: web.Request) -> web.Response:
    """点单式: a township school orders teacher + course from the libraries."""
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    data = await read_json(request)
    training = _file(state, claims, data, "ordered", None)
    return web.json_response(training.as_json(), status=201)


@documented(query={"state": STR}, answer=ARR_OBJ)
async def list_trainings(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    school = claims.subject if claims.role == "school" else None
    found = state.programme.trainings(school, request.query.get("state"))
    return web.json_response([t.as_json() for t in found])


@documented(params={"id": ID}, body=obj(reason=TEXT), errors=(409,))
async def decide(request: web.Request) -> web.Response:
    """The department approves (a live session is created) or rejects with a reason."""
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    if claims.role != "admin":
        raise HTTPProblem(403, "only the organisation department approves training")
    prog = state.programme
    training = prog.training(sqlite_int(request.match_info["id"], "training id"))
    if training is None:
        raise HTTPProblem(404, "no such training")
    if training.state != "filed":
        raise HTTPProblem(409, f"this training is already {training.state}")
    data = await read_json(request)
    if request.match_info["decision"] == "reject":
        reason = text_field(data, "reason")
        prog.decide(training.id, "rejected", reason, None)
        return web.json_response(prog.training(training.id).as_json())
    clash = prog.conflicts(
        training.teacher_id,
        training.school_id,
        training.starts_at,
        training.ends_at,
        exclude=training.id,
    )
    if any(c.state == "approved" for c in clash):
        raise HTTPProblem(409, "the teacher or classroom is already booked then")
    course, teacher = prog.course(training.course_id), prog.teacher(training.teacher_id)
    rooms = _rooms_for(state, training)
    title = f"{course.title}（{teacher.name}）"
    session = await create_lecture(
        state.store, state.attendance, title, by_whom(claims), rooms=rooms
    )
    prog.decide(training.id, "approved", "", session.id)
    links = session_links(state.config, state.signer, session, f"{request.scheme}://{request.host}")
    return web.json_response({"training": prog.training(training.id).as_json(), "session": links})


def _rooms_for(state: AppState, training) -> list[Classroom]:
    """The classrooms of the audience: every classroom of the task's townships, or of the
    ordering school's township and the audience's."""
    if training.task_id is not None:
        return choose(state.store, townships=state.programme.task(training.task_id)["townships"])
    names = training.audience.get("townships") or []
    own = next(
        (t for t in TOWNSHIPS if state.programme.school_of_township(t) == training.school_id), None
    )
    wanted = [*([own] if own else []), *[n for n in names if n in TOWNSHIPS]]
    if not wanted:
        return []
    return choose(state.store, townships=list(dict.fromkeys(wanted)))


# -- feedback, credit, rotation ------------------------------------------------------------------
@documented(
    body=obj(
        ("rating",),
        rating={"type": "integer", "minimum": 1, "maximum": 5},
        comment=STR,
        answers=arr(INT),
    ),
    ok=201,
    errors=(409, 429),
    answer=obj(("rating", "score"), rating=INT, score={"type": "number", "nullable": True}),
)
async def feedback(request: web.Request) -> web.Response:
    """After a session, from the watch and room pages: rating, comment, quiz answers."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("member", "room", "viewer"), sid)
    data = await read_json(request)
    rating = bounded_int(data.get("rating"), 1, 5, "rating is an integer from 1 to 5")
    comment = text_field(data, "comment", False)[:2000]
    training = state.programme.training_of_session(sid)
    course = state.programme.course(training.course_id) if training else None
    score = None
    answers = data.get("answers") or []
    if course and course.quiz:
        if not isinstance(answers, list) or len(answers) != len(course.quiz):
            raise HTTPProblem(
                400, f"answers: one option index for each of {len(course.quiz)} questions"
            )
        right = sum(1 for q, a in zip(course.quiz, answers, strict=True) if q["answer"] == a)
        score = right / len(course.quiz)
    who = claims.participant if claims.subject else f"viewer:{request.remote}"
    state.limits.feedback.take(f"{sid}/{who}")
    try:
        state.programme.add_feedback(sid, who, rating, comment, score)
    except Exception:  # sqlite3.IntegrityError: one feedback per participant
        raise HTTPProblem(409, "feedback for this session was already given") from None
    return web.json_response({"rating": rating, "score": score}, status=201)


@documented(
    query={"session": STR, "teacher": ID, "course": ID},
    answer=obj(("sessions", "count"), sessions=arr(STR), count=INT),
)
async def feedback_results(request: web.Request) -> web.Response:
    """``GET /api/feedback?session=|teacher=|course=`` (admin): ratings and quiz scores."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    q = request.query
    prog = state.programme
    trainings = [t for t in prog.trainings(state="approved") if t.session_id]
    if "teacher" in q:
        trainings = [t for t in trainings if t.teacher_id == sqlite_int(q["teacher"], "teacher")]
    if "course" in q:
        trainings = [t for t in trainings if t.course_id == sqlite_int(q["course"], "course")]
    sessions = [q["session"]] if "session" in q else [t.session_id for t in trainings]
    items = prog.feedback(sessions)
    scores = [i["score"] for i in items if i["score"] is not None]
    ratings = [i["rating"] for i in items]
    return web.json_response(
        {
            "sessions": sessions,
            "count": len(items),
            "average_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
            "average_score": round(sum(scores) / len(scores), 3) if scores else None,
            "comments": [i["comment"] for i in items if i["comment"]],
        }
    )


@documented(
    answer=obj(("member_id", "credits", "hours"), member_id=STR, credits=ARR_OBJ, hours=NUM)
)
async def member_credits(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    member_id = request.match_info["member"]
    claims = require(request, state.signer, ("admin", "member"))
    if claims.role == "member" and claims.subject != member_id:
        raise HTTPProblem(403, "a member reads only their own record")
    credits = state.programme.credits_of(member_id)
    return web.json_response(
        {"member_id": member_id, "credits": credits, "hours": sum(c["hours"] for c in credits)}
    )


@documented(
    query={"year": ID},
    answer=obj(("year", "target_hours", "townships"), year=INT, townships=ARR_OBJ),
)
async def rotation(request: web.Request) -> web.Response:
    """Per township: its classrooms, members who met the year's target, and who is behind."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    year = sqlite_int(request.query.get("year", datetime.date.today().year), "year")
    target = state.config.yearly_target_hours
    hours = state.programme.hours_by_member(year)
    classrooms: dict[str, int] = {}  # the township's school, bases and teaching points
    for c in state.store.classrooms():
        classrooms[c.township] = classrooms.get(c.township, 0) + 1
    out = []
    for township in TOWNSHIPS:
        members = state.store.members(township)
        met = [m for m in members if hours.get(m.member_id, 0) >= target]
        behind = [
            {"member_id": m.member_id, "name": m.name, "hours": hours.get(m.member_id, 0)}
            for m in members
            if hours.get(m.member_id, 0) < target
        ]
        out.append(
            {
                "township": township,
                "classrooms": classrooms.get(township, 0),
                "members": len(members),
                "met": len(met),
                "share": round(len(met) / len(members), 3) if members else None,
                "behind": behind,
            }
        )
    return web.json_response({"year": year, "target_hours": target, "townships": out})


@documented(answer=obj(("course", "teacher", "quiz"), quiz=ARR_OBJ))
async def session_course(request: web.Request) -> web.Response:
    """The course and teacher of a session, with its quiz (no answers), for the feedback form."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    require(request, state.signer, ("member", "room", "viewer", "lecturer", "admin"), sid)
    training = state.programme.training_of_session(sid)
    if training is None:
        return web.json_response({"course": None, "teacher": None, "quiz": []})
    course = state.programme.course(training.course_id)
    teacher = state.programme.teacher(training.teacher_id)
    return web.json_response(
        {
            "course": course.title,
            "class_hours": course.class_hours,
            "teacher": teacher.name if teacher else None,
            "quiz": course.as_json(with_answers=False)["quiz"],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{session}/course", session_course)
    r = app.router
    r.add_get("/api/tasks", list_tasks)
    r.add_post("/api/tasks", add_task)
    r.add_post("/api/tasks/{id}/filings", file_task)
    r.add_post("/api/orders", order)
    r.add_get("/api/trainings", list_trainings)
    r.add_post("/api/trainings/{id}/{decision:approve|reject}", decide)
    r.add_post("/api/sessions/{session}/feedback", feedback)
    r.add_get("/api/feedback", feedback_results)
    r.add_get("/api/members/{member}/credits", member_credits)
    r.add_get("/api/rotation", rotation)
