"""The API's OpenAPI document, made from the routes themselves so it cannot drift from them:
every path and method, with each handler's first docstring line as its summary, and what the
handler itself declares with ``@documented``: its JSON body, its query, its answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from server.state import STATE

PARAM = re.compile(r"\{(\w+)(?::([^}]*))?\}")
WORDS = re.compile(r"[\w-]+(\|[\w-]+)*")
JSON = "application/json"

# the vocabulary of the handlers' declarations (JSON Schema, as OpenAPI 3.0 reads it)
STR = {"type": "string"}
TEXT = {"type": "string", "pattern": r"\S"}  # required text: not blank
WHEN = {"type": "string", "format": "date-time"}  # ISO 8601, as fromisoformat reads it
BOOL = {"type": "boolean"}
NUM = {"type": "number"}
ID = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
INT = {"type": "integer"}
OBJ = {"type": "object"}
ARR_OBJ = {"type": "array", "items": OBJ}
PROBLEM = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": STR, "status": {"type": "integer"}},
}


def obj(required: tuple[str, ...] = (), **properties: dict) -> dict:
    """An object schema: ``properties``, of which ``required`` must be there."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


@dataclass(frozen=True)
class Doc:
    """What a handler declares of itself (``@documented``)."""

    body: dict | None = None  # the JSON body's schema
    body_required: bool = True
    ok: int = 200
    answer: dict = field(default_factory=lambda: OBJ)  # the JSON answer's schema
    errors: tuple[int, ...] = ()  # besides 400, 401, 403, 404 (413, 415 with a body)
    query: dict[str, dict] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)  # path parameters not strings
    produces: tuple[str, ...] = (JSON,)


def documented(**declared) -> Callable:
    """Declare a handler's body, query and answers (the fields of ``Doc``) beside it."""
    doc = Doc(**declared)

    def mark(handler):
        handler.openapi = doc
        return handler

    return mark


def _responses(doc: Doc) -> dict:
    ok: dict = {"description": "done"}
    ok["content"] = {t: {"schema": doc.answer if t == JSON else STR} for t in doc.produces}
    out = {str(doc.ok): ok}
    errors = {400, 401, 403, 404, *doc.errors} | ({413, 415} if doc.body is not None else set())
    for code in sorted(errors):
        out[str(code)] = {
            "description": "refused: {error, status}",
            "content": {JSON: {"schema": PROBLEM}},
        }
    return out


GROUP = re.compile(r"\(\?P<(\w+)>([^)]*)\)")


def _path_parameters(info: dict, path: str) -> list[tuple[str, str]]:
    """(name, regex) of each parameter of a route's path, from its compiled pattern (the
    formatter has dropped the regexes: ``{action:hide|show}`` reads ``{action}`` there)."""
    pattern = info.get("pattern")
    if pattern is not None:
        return GROUP.findall(pattern.pattern)
    return [(name, "") for name, _ in PARAM.findall(path)]


def _path_schema(declared: Doc | None, name: str, regex: str) -> dict:
    """A path parameter's schema: as declared, else its route's alternatives (``a|b``), else
    a string."""
    if declared is not None and name in declared.params:
        return declared.params[name]
    if WORDS.fullmatch(regex):
        return {"type": "string", "enum": regex.split("|")}
    return STR


def document(app: web.Application) -> dict:
    paths: dict[str, dict] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method in ("HEAD", "*") or not path.startswith(("/api", "/wh")):
            continue
        path = PARAM.sub(r"{\1}", path)
        doc = (route.handler.__doc__ or route.handler.__name__.replace("_", " ")).strip()
        declared = getattr(route.handler, "openapi", None)
        op: dict = {
            "summary": doc.splitlines()[0].strip(" `"),
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
        }
        if declared is None:
            op["responses"] = {"default": {"description": "JSON, or {error, status} on 4xx"}}
        else:
            op["responses"] = _responses(declared)
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _path_schema(declared, name, regex),
            }
            for name, regex in _path_parameters(info, path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in (declared.query if declared else {}).items()
        ]
        if params:
            op["parameters"] = params
        if path.startswith("/wh") and route.method == "POST" and declared is None:
            op["requestBody"] = {"content": {"application/sdp": {"schema": {"type": "string"}}}}
        elif declared is not None and declared.body is not None:
            op["requestBody"] = {
                "required": declared.body_required,
                "content": {JSON: {"schema": declared.body}},
            }
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Lecture Relay API",
            "version": "1",
            "description": "Bearer tokens carry a role (admin, school, lecturer, viewer, room, "
            "member) and a session; each operation checks both. Errors are JSON "
            '{"error": reason, "status": code}.',
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
    }


@documented(answer=obj(("openapi", "paths"), openapi=STR, paths=OBJ))
async def openapi_handler(request: web.Request) -> web.Response:
    """This document."""
    _ = request.app[STATE]
    return web.json_response(document(request.app))
