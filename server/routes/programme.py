"""The programme over HTTP: libraries, assigned and ordered training, approval, feedback,
credit and the rotation dashboard. Department admins decide; school operators (role
``school``, subject = their school) file and order; nobody approves their own request."""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

from aiohttp import web

from server.auth import Claims, require
from server.errors import HTTPProblem
from server.lectures.service import create_lecture
from server.links import session_links
from server.openapi import ARR_OBJ, ID, INT, NUM, STR, TEXT, WHEN, arr, documented, obj
from server.programme.imports import import_courses, import_teachers
from server.programme.store import school_id
from server.routes.bodies import read_body, read_json
from server.routes.fields import bounded_int, by_whom, sqlite_int, string_list, text_field
from server.state import STATE, AppState
from server.store import TOWNSHIPS

ADMIN = ("admin",)
STAFF = ("admin", "school")
IMPORT_LIMIT = 20 * 1024 * 1024  # a teacher or course spreadsheet
# what the handlers below read and answer, for the API's document (server/openapi.py)
SCHOOLS = ["city", *(school_id(i) for i in range(len(TOWNSHIPS)))]
TEACHER_FIELDS = {
    "name": TEXT,
    "organisation": TEXT,
    "tier": {"type": "string", "enum": ["city", "township"]},
    "school_id": {"type": "string", "enum": SCHOOLS},
    "tags": arr(STR),
    "contact": STR,
}
TEACHER_ANSWER = obj(("id", "name", "tier", "school_id", "tags"), id=INT, name=STR, tags=arr(STR))
COURSE_FIELDS = {
    "title": TEXT,
    "topic": TEXT,
    "class_hours": {"type": "number", "minimum": 0.5, "maximum": 8},
    "materials": STR,
    "teacher_ids": arr(ID),
}
QUIZ_ITEM = obj(
    ("question", "options", "answer"),
    question=STR,
    options={**arr(STR), "minItems": 1},
    answer={"type": "integer", "minimum": 0},
)
COURSE_ANSWER = obj(("id", "title", "class_hours", "teacher_ids"), id=INT, teacher_ids=arr(INT))
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


def _hours(value, high: float, reason: str) -> float:
    """A number of class hours (a JSON number or a numeric string), 0 < hours <= ``high``."""
    try:
        hours = -1.0 if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        hours = -1.0
    if not 0 < hours <= high:  # NaN fails this too
        raise HTTPProblem(400, reason)
    return hours


def _class_hours(value) -> float:
    return _hours(value, 8, "class_hours is a number from 0.5 to 8")


def _ids(value, what: str) -> list[int]:
    """A list of ids (``teacher_ids``)."""
    if not isinstance(value, list):
        raise HTTPProblem(400, f"{what} is a list of integers")
    return [sqlite_int(v, what) for v in value]


def _quiz(value) -> list[dict]:
    """Quiz items: ``{question, options (strings), answer (the right option's index)}``."""
    reason = "quiz items are {question, options (strings), answer (index)}"
    if not isinstance(value, list):
        raise HTTPProblem(400, reason)
    for item in value:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("question"), str)
            and isinstance(item.get("options"), list)
            and all(isinstance(o, str) for o in item["options"])
            and isinstance(item.get("answer"), int)
            and not isinstance(item["answer"], bool)
            and 0 <= item["answer"] < len(item["options"])
        ):
            raise HTTPProblem(400, reason)
    return value


def _only(data: dict, allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise HTTPProblem(400, f"unknown fields: {', '.join(sorted(unknown))}")


# -- libraries ---------------------------------------------------------------------------------
@documented(answer=ARR_OBJ)
async def schools(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    require(request, state.signer, STAFF)
    return web.json_response(state.programme.schools())


@documented(query={"q": STR, "tier": STR, "school": STR, "tag": STR}, answer=ARR_OBJ)
async def teachers(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    q = request.query
    found = state.programme.teachers(q.get("q", ""), q.get("tier"), q.get("school"), q.get("tag"))
    return web.json_response([t.as_json(with_contact=claims.role == "admin") for t in found])


@documented(
    body=obj(("name", "organisation", "tier", "school_id"), **TEACHER_FIELDS),
    ok=201,
    answer=TEACHER_ANSWER,
)
async def add_teacher(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    data = await read_json(request)
    tier = text_field(data, "tier")
    school = text_field(data, "school_id")
    if tier not in ("city", "township"):
        raise HTTPProblem(400, "tier is city or township")
    if state.programme.school(school) is None:
        raise HTTPProblem(400, f"unknown school {school}")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise HTTPProblem(400, "tags is a list of strings")
    (tid,) = state.programme.add_teachers(
        [
            (
                text_field(data, "name"),
                text_field(data, "organisation"),
                tier,
                school,
                tuple(tags),
                text_field(data, "contact", False),
            )
        ]
    )
    return web.json_response(state.programme.teacher(tid).as_json(True), status=201)


@documented(params={"id": ID}, body=obj(**TEACHER_FIELDS), answer=TEACHER_ANSWER)
async def update_teacher(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    tid = sqlite_int(request.match_info["id"], "id")
    if state.programme.teacher(tid) is None:
        raise HTTPProblem(404, "no such teacher")
    data = await read_json(request)
    _only(data, {"name", "organisation", "tier", "school_id", "tags", "contact"})
    changes: dict = {k: text_field(data, k) for k in ("name", "organisation") if k in data}
    if "contact" in data:
        changes["contact"] = text_field(data, "contact", False)
    if "tier" in data:
        if data["tier"] not in ("city", "township"):
            raise HTTPProblem(400, "tier is city or township")
        changes["tier"] = data["tier"]
    if "school_id" in data:
        changes["school_id"] = text_field(data, "school_id")
        if state.programme.school(changes["school_id"]) is None:
            raise HTTPProblem(400, "unknown school")
    if "tags" in data:
        changes["tags"] = string_list(data["tags"], "tags")
    state.programme.update_teacher(tid, **changes)
    return web.json_response(state.programme.teacher(tid).as_json(True))


@documented(params={"id": ID}, body=obj(**COURSE_FIELDS), answer=COURSE_ANSWER)
async def update_course(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    cid = sqlite_int(request.match_info["id"], "id")
    if state.programme.course(cid) is None:
        raise HTTPProblem(404, "no such course")
    data = await read_json(request)
    _only(data, {"title", "topic", "class_hours", "materials", "teacher_ids"})
    changes: dict = {k: text_field(data, k) for k in ("title", "topic") if k in data}
    if "materials" in data:
        changes["materials"] = text_field(data, "materials", False)
    if "class_hours" in data:
        changes["class_hours"] = _class_hours(data["class_hours"])
    teacher_ids = data.get("teacher_ids")
    if teacher_ids is not None:
        teacher_ids = _ids(teacher_ids, "teacher_ids")
        if len(state.programme.teachers(ids=teacher_ids)) != len(set(teacher_ids)):
            raise HTTPProblem(400, "unknown teachers")
    state.programme.update_course(cid, teacher_ids, **changes)
    return web.json_response(state.programme.course(cid).as_json())


def _deleter(what: str, name: str):
    """DELETE a library entry: 404 when absent, 409 when training is booked with it."""

    async def handler(request: web.Request) -> web.Response:
        state: AppState = request.app[STATE]
        require(request, state.signer, ADMIN)
        delete = getattr(state.programme, f"delete_{what}")
        try:
            gone = delete(sqlite_int(request.match_info["id"], "id"))
        except ValueError as exc:
            raise HTTPProblem(409, str(exc)) from None
        if not gone:
            raise HTTPProblem(404, f"no such {name}")
        return web.json_response({"deleted": True})

    handler.__doc__ = f"Delete a {name} from the library (admin)."
    handler.__name__ = f"delete_{what}"
    answer = obj(("deleted",), deleted={"type": "boolean"})
    return documented(params={"id": ID}, errors=(409,), answer=answer)(handler)


delete_course = _deleter("course", "course")
delete_teacher = _deleter("teacher", "teacher")


@documented(query={"q": STR, "topic": STR, "teacher": ID}, answer=ARR_OBJ)
async def courses(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    claims = require(request, state.signer, STAFF)
    q = request.query
    teacher = sqlite_int(q["teacher"], "teacher") if "teacher" in q else None
    found = state.programme.courses(q.get("q", ""), q.get("topic"), teacher)
    return web.json_response([c.as_json(with_answers=claims.role == "admin") for c in found])


@documented(
    body=obj(("title", "topic", "class_hours"), **COURSE_FIELDS, quiz=arr(QUIZ_ITEM)),
    ok=201,
    answer=COURSE_ANSWER,
)
async def add_course(request: web.Request) -> web.Response:
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    data = await read_json(request)
    hours = _class_hours(data.get("class_hours"))
    teacher_ids = _ids(data.get("teacher_ids") or [], "teacher_ids")
    known = {t.id for t in state.programme.teachers(ids=teacher_ids)} if teacher_ids else set()
    if set(teacher_ids) - known:
        raise HTTPProblem(400, f"unknown teachers {sorted(set(teacher_ids) - known)}")
    quiz = _quiz(data.get("quiz") or [])
    (cid,) = state.programme.add_courses(
        [
            (
                text_field(data, "title"),
                text_field(data, "topic"),
                hours,
                text_field(data, "materials", False),
                teacher_ids,
                quiz,
            )
        ]
    )
    return web.json_response(state.programme.course(cid).as_json(), status=201)


async def import_library(request: web.Request) -> web.Response:
    """``POST /api/teachers/import`` or ``/api/courses/import`` with a CSV or XLSX body."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    kinds = {
        "text/csv": ".csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    }
    suffix = kinds.get(request.content_type)
    if suffix is None:
        raise HTTPProblem(415, "send text/csv or an .xlsx spreadsheet")
    body = await read_body(request, IMPORT_LIMIT, "file")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(body)
        what = request.match_info["what"]
        result = (import_teachers if what == "teachers" else import_courses)(state.programme, path)
    return web.json_response(
        {
            "rows": result.rows,
            "imported": result.imported,
            "errors": [{"row": n, "reason": r} for n, r in result.errors],
        }
    )


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
    hours = _hours(data.get("class_hours"), TASK_HOURS, f"class_hours is a number to {TASK_HOURS}")
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


def _rooms_for(state: AppState, training) -> tuple[str, ...]:
    """The classrooms of the audience: the task's townships, or the ordering school's."""
    if training.task_id is not None:
        return tuple(state.programme.task(training.task_id)["townships"])
    names = training.audience.get("townships") or []
    own = next(
        (t for t in TOWNSHIPS if state.programme.school_of_township(t) == training.school_id), None
    )
    return tuple(dict.fromkeys([*([own] if own else []), *[n for n in names if n in TOWNSHIPS]]))


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
    who = f"{claims.role}:{claims.subject}" if claims.subject else f"viewer:{request.remote}"
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
    """Per township: members who met the year's target, and who is behind."""
    state: AppState = request.app[STATE]
    require(request, state.signer, ADMIN)
    year = sqlite_int(request.query.get("year", datetime.date.today().year), "year")
    target = state.config.yearly_target_hours
    hours = state.programme.hours_by_member(year)
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
    r.add_get("/api/schools", schools)
    r.add_get("/api/teachers", teachers)
    r.add_post("/api/teachers", add_teacher)
    r.add_patch("/api/teachers/{id}", update_teacher)
    r.add_delete("/api/teachers/{id}", delete_teacher)
    r.add_patch("/api/courses/{id}", update_course)
    r.add_delete("/api/courses/{id}", delete_course)
    r.add_get("/api/courses", courses)
    r.add_post("/api/courses", add_course)
    r.add_post("/api/{what:teachers|courses}/import", import_library)
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
