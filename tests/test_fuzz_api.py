"""Schemathesis against the API's own OpenAPI document (server/web/openapi.py), on a real relay.

Every JSON operation gets cases made from its declared schema (positive: bodies and
parameters as declared; negative: each of them broken: wrong types, missing fields, values
out of range) with each role's token, or none. Half of the cases name the relay's real
session, teacher, course, task, training and question, so that they get past the 404s. A case
passes when the answer is no 5xx, its status is documented for the operation, and its body
is of the documented content type and matches the documented schema.

Left out: the WHIP/WHEP SDP operations and the heartbeat WebSocket (tests/test_fuzz_wire.py
fuzzes those), ending the session and deleting library entries (the other cases need them),
and spreadsheet imports (tests/test_spreadsheets.py). scripts/fuzz_api.py runs the same for
longer.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.programme.store import school_id
from server.store import TOWNSHIPS
from server.web.openapi import document
from tests.calls import call

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXCLUDED = {
    ("POST", "/whip/{session}"),  # SDP offers: tests/test_fuzz_wire.py
    ("POST", "/whep/{session}"),
    ("OPTIONS", "/whip/{session}"),
    ("OPTIONS", "/whep/{session}"),
    ("DELETE", "/whip/{session}/{resource}"),
    ("DELETE", "/whep/{session}/{resource}"),
    ("PATCH", "/whip/{session}/{resource}"),
    ("PATCH", "/whep/{session}/{resource}"),
    ("GET", "/whep/{session}/{resource}/heartbeats"),  # the WebSocket
    ("POST", "/api/sessions/{session}/end"),  # ends the session the other cases use
    ("DELETE", "/api/teachers/{id}"),  # the library entries the other cases use
    ("DELETE", "/api/courses/{id}"),
    ("POST", "/api/{what}/import"),  # spreadsheets: tests/test_spreadsheets.py
}
ROLES = ("admin", "school", "lecturer", "viewer", "room", "member", None)
TUANBAO = school_id(TOWNSHIPS.index("团堡镇"))


@dataclass
class World:
    """What a relay holds for the cases to name: ids and each role's token."""

    session: str
    ids: dict[str, int]  # the first path segment (teachers, courses...) -> a real id
    tokens: dict[str | None, str | None]
    member: str = "m-1"


@dataclass
class Tally:
    """Cases run and answers seen, per operation; failures with the case that showed them."""

    cases: collections.Counter = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


async def seed_world(relay) -> World:
    """A session with a question, a teacher, a course, a task and a filed training."""
    links = relay.new_session()
    sid = links["session_id"]
    admin = relay.token("admin", None)
    school = relay.token("school", None, TUANBAO)
    member = relay.token("member", sid, "m-1")
    teacher = {"name": "向明", "organisation": "利川市委党校", "tier": "city", "school_id": "city"}
    t = (await call(relay, "POST", "/api/teachers", admin, teacher))[1]
    course = {
        "title": "学习全会精神",
        "topic": "理论学习",
        "class_hours": 2,
        "teacher_ids": [t["id"]],
    }
    c = (await call(relay, "POST", "/api/courses", admin, course))[1]
    task = {"theme": "冬训", "class_hours": 2, "townships": ["团堡镇"]}
    task |= {"period_from": "2026-12-01", "period_to": "2026-12-31"}
    k = (await call(relay, "POST", "/api/tasks", admin, task))[1]
    order = {"teacher_id": t["id"], "course_id": c["id"]}
    order |= {"starts_at": "2026-12-05T09:00+08:00", "ends_at": "2026-12-05T11:00+08:00"}
    tr = (await call(relay, "POST", "/api/orders", school, order))[1]
    q = (await call(relay, "POST", f"/api/sessions/{sid}/questions", member, {"text": "请问"}))[1]
    ids = {"teachers": t["id"], "courses": c["id"], "tasks": k["id"], "trainings": tr["id"]}
    ids["sessions"] = q["id"]  # /api/sessions/{session}/questions/{id}
    tokens = {
        "admin": admin,
        "school": school,
        "lecturer": links["lecturer_token"],
        "viewer": links["viewer_token"],
        "room": links["rooms"][0]["token"],
        "member": member,
        None: None,
    }
    return World(sid, ids, tokens)


def api_schema(app):
    schema = schemathesis.openapi.from_dict(document(app))
    # the cases carry the roles' real tokens; a generated (or negated) Authorization header
    # would only be a malformed request that aiohttp's parser refuses before the API
    schema.config.generation.update(with_security_parameters=False)
    return schema


def fuzzed_operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if (op.method.upper(), op.path) not in EXCLUDED]


def fuzz_operation(
    op,
    base_url: str,
    world: World,
    tally: Tally,
    examples: int,
    seed: int | None = None,
    deadline_at: float | None = None,
    shrink: bool = False,
) -> None:
    """``examples`` positive and as many negative cases of ``op``; failures into ``tally``
    (the first of each mode, its case as curl)."""
    http = requests.Session()
    name = f"{op.method.upper()} {op.path}"
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        profile = settings(
            max_examples=examples,
            derandomize=seed is None,
            database=None,
            deadline=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
        )

        @profile
        @given(
            case=op.as_strategy(generation_mode=mode),
            role=st.sampled_from(ROLES),
            real=st.booleans(),
        )
        def one(case, role, real):
            if deadline_at is not None and time.monotonic() > deadline_at:
                return  # out of time: the remaining examples pass at once
            if real:
                name_real_things(case, world)
            token = world.tokens[role]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if not token:
                case.headers = {
                    k: v for k, v in (case.headers or {}).items() if k != "Authorization"
                }
            response = case.call(base_url=base_url, session=http, headers=headers, timeout=30)
            tally.cases[name] += 1
            tally.statuses[name][response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        test = hypothesis_seed(seed)(one) if seed is not None else one
        try:
            test()
        except Unsatisfiable:
            pass  # nothing of this operation can be negated (only string path parameters)
        except BaseException as exc:  # noqa: BLE001 - a failure to report, with its case
            if isinstance(exc, KeyboardInterrupt):
                raise
            tally.failures.append(f"{name} ({mode.value}): {exc}")


def name_real_things(case, world: World) -> None:
    """Point the case's path at what the relay holds, so that it gets past the 404s."""
    params = case.path_parameters
    if params is None:
        return
    if "session" in params:
        params["session"] = world.session
    if "member" in params:
        params["member"] = world.member
    if "id" in params:
        kind = case.operation.path.split("/")[2]
        params["id"] = world.ids.get(kind, params["id"])


def fuzz_all(app, base_url: str, world: World, examples: int, **options) -> Tally:
    tally = Tally()
    for op in fuzzed_operations(api_schema(app)):
        fuzz_operation(op, base_url, world, tally, examples, **options)
    return tally


EXAMPLES = 40  # per operation and mode


async def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(relay):
    world = await seed_world(relay)
    tally = await asyncio.to_thread(fuzz_all, relay.app, relay.base_url, world, EXAMPLES)
    print(f"fuzz_api: {tally.total} cases over {len(tally.cases)} operations")
    assert not tally.failures, "\n\n".join(tally.failures)
    assert len(tally.cases) >= 40 and tally.total >= 40 * EXAMPLES


async def test_every_json_operation_declares_its_body_and_answers(relay):
    """The document cannot drift: a handler that reads JSON declares its body's schema, and
    every operation the fuzzer covers declares its answers (no bare "default")."""
    import inspect

    doc = document(relay.app)
    schema = api_schema(relay.app)
    for op in fuzzed_operations(schema):
        spec = doc["paths"][op.path][op.method.lower()]
        assert "default" not in spec["responses"], op.path
    for route in relay.app.router.routes():
        reads_json = "read_json(" in inspect.getsource(route.handler)
        declared = getattr(route.handler, "openapi", None)
        if reads_json:
            assert declared is not None and declared.body is not None, route.resource.canonical
