"""Cluster mode: a page loaded from one node talks WHEP to another after a 307, so the WHEP
resources answer cross-origin requests. Tokens travel as bearer headers (or the redirect's
query), never cookies, so allowing any origin exposes nothing a token does not already open."""

from __future__ import annotations

from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location, Link",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors_middleware(request: web.Request, handler):
    if not request.path.startswith("/whep/"):
        return await handler(request)
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(CORS_HEADERS)
        raise
    response.headers.update(CORS_HEADERS)
    return response
