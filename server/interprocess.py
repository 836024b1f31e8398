"""How relay processes talk to each other: a shared token in one header, JSON bodies.

The token is derived from the install's signing secret, so the primary, its workers and (in
cluster mode) every node that shares ``LR_SECRET`` agree on it without another setting.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from server.web.errors import HTTPProblem

INTERNAL_HEADER = "X-Relay-Internal"


def internal_token(secret: bytes) -> str:
    return hmac.new(secret, b"lecture-relay internal v1", hashlib.sha256).hexdigest()


def check_internal(request: web.Request, token: str) -> None:
    given = request.headers.get(INTERNAL_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPProblem(403, "internal endpoint")


async def read_internal_json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPProblem(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "body must be a JSON object")
    return body
