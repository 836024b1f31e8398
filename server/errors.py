"""The one exception type for errors a user can cause, and the middleware that answers it."""

from __future__ import annotations

import logging

from aiohttp import web

from server.attendance.writer import EventRefused, LedgerWriteError

log = logging.getLogger(__name__)


class HTTPProblem(Exception):
    """An error the caller caused: carries the HTTP status and a human reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def problem_response(status: int, reason: str, headers: dict[str, str] | None = None):
    return web.json_response({"error": reason, "status": status}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except HTTPProblem as exc:
        return problem_response(exc.status, exc.reason, exc.headers)
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
