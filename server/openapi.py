"""The API's OpenAPI document, made from the routes themselves so it cannot drift from them:
every path and method, with each handler's first docstring line as its summary."""

from __future__ import annotations

import re

from aiohttp import web

from server.state import STATE

PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def document(app: web.Application) -> dict:
    paths: dict[str, dict] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method in ("HEAD", "*") or not path.startswith(("/api", "/wh")):
            continue
        path = PARAM.sub(r"{\1}", path)
        doc = (route.handler.__doc__ or route.handler.__name__.replace("_", " ")).strip()
        op: dict = {
            "summary": doc.splitlines()[0].strip(" `"),
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "responses": {"default": {"description": "JSON, or {error, status} on 4xx"}},
        }
        names = PARAM.findall(info.get("formatter") or path)
        if names:
            op["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in names
            ]
        if path.startswith("/wh") and route.method == "POST":
            op["requestBody"] = {"content": {"application/sdp": {"schema": {"type": "string"}}}}
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


async def openapi_handler(request: web.Request) -> web.Response:
    """This document."""
    _ = request.app[STATE]
    return web.json_response(document(request.app))
