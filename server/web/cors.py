"""CORS for WHIP, WHEP and the session's read route, in every mode.

A WHEP player embedded in another site's page, a WHIP publisher in a browser on another
origin, and in a cluster our own page after a WHEP 307 to another node, all call the relay
cross-origin (RFC 9725 section 4.7 asks WHIP endpoints to answer CORS preflights). Tokens
travel as bearer headers (or a redirect's query), never cookies, so no response is
``Allow-Credentials`` and allowing an origin exposes nothing its caller's token does not
already open. Which origins: ``LR_CORS_ORIGINS`` (``*`` by default; a list echoes the
caller's origin when it is on it, with ``Vary: Origin``).
"""

from __future__ import annotations

import re

from aiohttp import web

from server.web.errors import problem_response

ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, If-Match"
EXPOSE_HEADERS = "Location, Link, ETag, Accept-Patch, Accept-Post, Retry-After"
MAX_AGE = "600"
# What a player page needs: the WHIP/WHEP resources and the session's ICE servers and state.
CROSS_ORIGIN = re.compile(r"^/(whip|whep)/|^/api/sessions/[^/]+$")


def cors_middleware_for(origins: tuple[str, ...]):
    anyone = "*" in origins

    def allowed(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if anyone:
            return "*"
        return origin if origin in origins else None

    def decorate(headers, origin: str) -> None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if origin != "*":
            headers.add("Vary", "Origin")

    @web.middleware
    async def cors_middleware(request: web.Request, handler):
        if not CROSS_ORIGIN.match(request.path):
            return await handler(request)
        origin = allowed(request)
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            if origin is None:  # not an origin we serve: the browser refuses, we explain
                return problem_response(403, "this origin may not call the relay")
            response = web.Response(status=204)
            decorate(response.headers, origin)
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
            return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect (a WHEP 307 in a cluster)
            if origin is not None:
                decorate(exc.headers, origin)
            raise
        if origin is not None:
            decorate(response.headers, origin)
        return response

    return cors_middleware
