"""The bearer token of a request (the Authorization header, else ``?token=``: a page's link
and an EventSource cannot set a header) and the check every route starts with."""

from __future__ import annotations

from aiohttp import web

from server.auth import Claims, TokenSigner, authorize
from server.refusals import Unauthenticated


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.query.get("token") or None


def require(
    request: web.Request, signer: TokenSigner, roles: tuple[str, ...], session: str | None = None
) -> Claims:
    """The request's claims: Unauthenticated (401) when its token is missing or bad,
    Forbidden (403) when the role or session does not fit."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("missing bearer token")
    return authorize(signer.verify(token), roles, session)
