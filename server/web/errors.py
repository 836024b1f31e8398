"""The HTTP adapter's errors: its own exception for what a request got wrong, the one table
that maps the services' refusals (server/refusals.py) to statuses, and the middleware that
answers both."""

from __future__ import annotations

import logging

from aiohttp import web

from server.attendance.writer import EventRefused, LedgerWriteError
from server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Refused,
    Unauthenticated,
    Unavailable,
    Unreachable,
)

log = logging.getLogger(__name__)


class HTTPProblem(Exception):
    """An error the caller caused: carries the HTTP status and a human reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


STATUS_OF: dict[type[Refused], int] = {
    Invalid: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    Unreachable: 502,
    Unavailable: 503,
}


def status_of(refusal: Refused) -> int:
    """The HTTP status that answers a service's refusal (400 for one not in the table)."""
    for kind in type(refusal).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 400


def refusal_headers(refusal: Refused) -> dict[str, str] | None:
    """What the status asks for beside it: how to authenticate (RFC 6750), when to retry."""
    if isinstance(refusal, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(refusal, Unavailable):
        return {"Retry-After": "5"}
    return None


def problem_response(status: int, reason: str, headers: dict[str, str] | None = None):
    return web.json_response({"error": reason, "status": status}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except HTTPProblem as exc:
        return problem_response(exc.status, exc.reason, exc.headers)
    except Refused as exc:
        return problem_response(status_of(exc), exc.reason, refusal_headers(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        return problem_response(exc.status, exc.reason, keep)
    except EventRefused as exc:  # the caller's event alone; the others with it were written
        return problem_response(400, str(exc))
    except LedgerWriteError:
        log.exception("the ledger could not record %s %s", request.method, request.path)
        return problem_response(
            503, "the attendance ledger could not record it; try again", {"Retry-After": "5"}
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "internal error")
