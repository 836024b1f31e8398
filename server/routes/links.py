"""Personal watch links, handed out by the admin page for distribution by message."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from server.attendance.events import Export
from server.attendance.exports import CONTENT_TYPES
from server.lectures.links import member_links, to_csv_bytes, to_xlsx_bytes
from server.routes.fields import by_whom, known_session
from server.state import STATE, AppState
from server.store import Member
from server.web.bearer import require
from server.web.errors import HTTPProblem
from server.web.openapi import STR, documented


@documented(
    query={"format": {"type": "string", "enum": ["csv", "xlsx"]}, "township": STR},
    errors=(409,),
    produces=(CONTENT_TYPES["csv"], CONTENT_TYPES["xlsx"]),
)
async def member_link_file(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/links?format=csv|xlsx[&township=...]`` (admin): each roster
    member's name and personal watch link (a signed, expiring member token), what
    ``lecture-relay links`` writes. It hands out names and tokens, so it is recorded in the
    session's ledger like any export of personal data."""
    state: AppState = request.app[STATE]
    sid = request.match_info["session"]
    claims = require(request, state.signer, ("admin",))
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        raise HTTPProblem(400, "format is csv or xlsx")
    township = request.query.get("township", "").strip() or None
    session = known_session(state, sid)
    # the whole roster (30,000 rows) is read, signed and written off the event loop
    roster = await asyncio.to_thread(state.store.roster_apart)
    members = [m for m in roster if township is None or m.township == township]
    if not members:
        if township is None:
            raise HTTPProblem(409, "the roster is empty: import it first (roster import)")
        raise HTTPProblem(404, f"no member of {township} in the roster")
    await state.attendance.append_signed(sid, Export(by_whom(claims), f"links-{fmt}", False))
    base = f"{request.scheme}://{request.host}"
    body = await asyncio.to_thread(_render, state, session, members, base, fmt)
    name = f"links-{sid}{'-' + township if township else ''}.{fmt}"
    disposition = f"attachment; filename=\"links-{sid}.{fmt}\"; filename*=UTF-8''{quote(name)}"
    return web.Response(
        body=body, content_type=CONTENT_TYPES[fmt], headers={"Content-Disposition": disposition}
    )


def _render(state: AppState, session, members: list[Member], base: str, fmt: str) -> bytes:
    rows = member_links(state.config, state.signer, session, members, base)
    return to_xlsx_bytes(rows) if fmt == "xlsx" else to_csv_bytes(rows)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{session}/links", member_link_file)
