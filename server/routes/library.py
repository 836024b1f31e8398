"""The programme's libraries over HTTP: the teacher pool (师资库) and the course library
(课程库), each edited one entry at a time or imported from a spreadsheet; the schools. Department
admins edit; school operators read."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiohttp import web

from server.programme.imports import import_courses, import_teachers
from server.programme.store import school_id
from server.routes.bodies import read_body, read_json
from server.routes.fields import sqlite_int, string_list, text_field
from server.state import STATE, AppState
from server.store import TOWNSHIPS
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import ARR_OBJ, ID, INT, STR, TEXT, arr, documented, obj

ADMIN = ("admin",)
STAFF = ("admin", "school")
IMPORT_LIMIT = 20 * 1024 * 1024  # a teacher or course spreadsheet
# what the handlers below read and answer, for the API's document (server/web/openapi.py)
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


def hours_value(value, high: float, reason: str) -> float:
    """A number of class hours (a JSON number or a numeric string), 0 < hours <= ``high``."""
    try:
        hours = -1.0 if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        hours = -1.0
    if not 0 < hours <= high:  # NaN fails this too
        raise HTTPProblem(400, reason)
    return hours


def _class_hours(value) -> float:
    return hours_value(value, 8, "class_hours is a number from 0.5 to 8")


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


def add_routes(app: web.Application) -> None:
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
