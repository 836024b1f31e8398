"""What the routes read from a request and the state, with a clear 400 or 404: bounded
numbers, ids SQLite can hold, text fields, the session named in the path, who a ledger
event says did it."""

from __future__ import annotations

import re

from server.auth import Claims
from server.refusals import whole_number
from server.state import AppState
from server.store import Session
from server.web.errors import HTTPProblem


def bounded_int(value: object, low: int, high: int | None, reason: str) -> int:
    """A JSON integer (not a boolean) within [low, high], else 400 with ``reason`` (the
    services' own check, refusals.whole_number, answered as every Invalid is)."""
    return whole_number(value, low, high, reason)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite stores as an INTEGER
DECIMAL = re.compile(r"-?[0-9]{1,19}")


def sqlite_int(value: object, what: str) -> int:
    """An id or a number from a body (a JSON integer, not a boolean or a fraction) or from a
    path or query (decimal digits), within SQLite's 64-bit range: past it, SQLite raises
    OverflowError where a lookup should find nothing. Else 400 naming ``what``."""
    if isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        raise HTTPProblem(400, f"{what} must be an integer")
    return value


def text_field(data: dict, key: str, required: bool = True) -> str:
    """A body's string field, stripped: 400 when it is another type (an object would be
    stored as its Python repr), or empty and ``required``; "" when absent and optional."""
    value = data.get(key)
    if value is None:
        if required:
            raise HTTPProblem(400, f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise HTTPProblem(400, f"{key} is a string")
    value = value.strip()
    if required and not value:
        raise HTTPProblem(400, f"{key} is required")
    return value


def string_list(value: object, what: str) -> list[str]:
    """A JSON list of strings, else 400 naming ``what``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPProblem(400, f"{what} is a list of strings")
    return value


def by_whom(claims: Claims) -> str:
    """Who a ledger event says did it: the token's subject, else its role."""
    return str(claims.subject or claims.role)


def known_session(state: AppState, sid: str) -> Session:
    """The session ``sid``, or a 404 that names it: every route under /api/sessions/{id}."""
    session = state.store.get_session(sid)
    if session is None:
        raise HTTPProblem(404, f"unknown session {sid}")
    return session
