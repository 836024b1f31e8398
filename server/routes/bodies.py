"""Reading a request's body whole, however it arrives, and refusing what no handler should see.

``request.content.read(n)`` returns what has arrived so far, not ``n`` bytes: a phone's SDP
offer or a spreadsheet crosses several TCP segments on any real link. Every route reads its
body through ``read_body``, which waits for the end of the body, stops at a limit (413) and
gives up on a client that trickles it for longer than ``BODY_DEADLINE_S`` (408).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from server.web.errors import HTTPProblem

BODY_DEADLINE_S = 30.0
CHUNK = 64 * 1024


async def read_body(
    request: web.Request, limit: int, what: str = "body", deadline_s: float = BODY_DEADLINE_S
) -> bytes:
    """The whole body, at most ``limit`` bytes (413 past it, before reading on where the
    Content-Length says so), within ``deadline_s`` (408)."""
    too_large = HTTPProblem(413, f"{what} larger than {limit} bytes")
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0

    async def read_all() -> None:
        nonlocal size
        while True:
            chunk = await request.content.read(CHUNK)
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read_all(), deadline_s)
    except TimeoutError:
        raise HTTPProblem(408, f"{what} did not arrive within {deadline_s:g} s") from None
    return b"".join(chunks)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> object:
    """Strict JSON: UTF-8, no NaN or Infinity, no lone surrogates in any string (they cannot
    be stored or hashed as UTF-8). ValueError for anything else."""
    data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    # a lone surrogate ("\ud800") only shows when the text is encoded again
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    return data


async def read_json(request: web.Request, limit: int = 16 * 1024) -> dict:
    """A JSON object body (415 for another type, 413 past ``limit``, 400 if invalid)."""
    if request.content_type != "application/json":
        raise HTTPProblem(415, "Content-Type must be application/json")
    body = await read_body(request, limit, "body")
    try:
        data = parse_json(body or b"null")
    except (ValueError, UnicodeError, RecursionError):
        raise HTTPProblem(
            400, "body is not valid JSON (UTF-8; no NaN, no lone surrogates)"
        ) from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "body must be a JSON object")
    return data
