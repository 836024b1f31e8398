"""The pages, served by the product itself (no CDN: deployments are on intranets)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def static_root() -> Path:
    """The pages' folder: the checkout's static/, else where the wheel installed it
    (``<prefix>/share/lecture-relay/static``, pyproject.toml's data-files)."""
    checkout = Path(__file__).resolve().parents[2] / "static"
    if (checkout / "index.html").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "lecture-relay" / "static"


STATIC = static_root()
PAGES = {
    "/": "index.html",
    "/lecturer": "lecturer.html",
    "/room": "room.html",
    "/watch": "watch.html",
    "/audit": "audit.html",
    "/replay": "replay.html",
    "/admin": "admin.html",
    "/programme": "programme.html",
    "/school": "school.html",
    "/me": "me.html",
}


def _page(name: str):
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name)  # no-store and the CSP: server/web/headers.py

    return handler


async def _icon(request: web.Request) -> web.FileResponse:
    """The pages' icon, at the address browsers ask for by themselves too (else a 404 each)."""
    response = web.FileResponse(STATIC / "favicon.svg")
    response.headers["Cache-Control"] = "max-age=86400"
    return response


def add_routes(app: web.Application) -> None:
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/favicon.ico", _icon)
    app.router.add_static("/static/", STATIC, append_version=False)
