"""What the primary's media workers call: register on start, report viewers each second."""

from __future__ import annotations

from aiohttp import web

from server.interprocess import check_internal, read_internal_json
from server.state import STATE
from server.web.errors import HTTPProblem
from server.workers.pool import WorkerPool


def _pool(request: web.Request) -> WorkerPool:
    state = request.app[STATE]
    check_internal(request, state.signer.internal_token())
    if state.live.pool is None:
        raise HTTPProblem(404, "this relay runs no media workers")
    return state.live.pool


async def register(request: web.Request) -> web.Response:
    pool = _pool(request)
    body = await read_internal_json(request)
    try:
        pool.registered(int(body["worker"]), str(body["url"]), int(body["pid"]))
    except (KeyError, TypeError, ValueError):
        raise HTTPProblem(400, "body must be {worker, url, pid}") from None
    return web.json_response({"ok": True})


async def report(request: web.Request) -> web.Response:
    pool = _pool(request)
    pool.report(await read_internal_json(request))
    return web.json_response({"ok": True})


async def cluster_feed(request: web.Request) -> web.Response:
    """Another node asks this one (the origin) for a session: ``{session, node, dest}``."""
    state = request.app[STATE]
    check_internal(request, state.signer.internal_token())
    if state.cluster is None:
        raise HTTPProblem(404, "this relay is not in a cluster")
    body = await read_internal_json(request)
    try:
        sid, node, (host, port) = str(body["session"]), str(body["node"]), body["dest"]
    except (KeyError, TypeError, ValueError):
        raise HTTPProblem(400, "body must be {session, node, dest: [host, port]}") from None
    media = await state.live.open(sid)
    source = await state.cluster.feed_edge(media, node, (str(host), int(port)))
    return web.json_response({"source": source})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/internal/workers", register)
    app.router.add_post("/internal/report", report)
    app.router.add_post("/internal/cluster/feed", cluster_feed)
