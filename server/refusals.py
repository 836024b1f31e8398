"""What a service refuses, in its own words: no HTTP here. The adapters answer them: the
routes through server/web/errors.py (one table of statuses), the CLI with its exit code 2."""

from __future__ import annotations


class Refused(Exception):
    """A request the service will not carry out, and why (``reason``, shown to the user)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Invalid(Refused):
    """The request itself is malformed or out of range."""


class Unauthenticated(Refused):
    """No credential, or one that is malformed, forged or expired."""


class Forbidden(Refused):
    """A good credential, but not for this: another role, another session, another township."""


class NotFound(Refused):
    """What it names does not exist."""


class Conflict(Refused):
    """It clashes with the state things are in (the floor is full, already done)."""


class Gone(Refused):
    """It existed and is over (an ended lecture)."""


class Unavailable(Refused):
    """A part it needs is not running now; worth trying again shortly."""


class Unreachable(Refused):
    """Another node it needs answered wrongly or not at all."""


def whole_number(value: object, low: int, high: int | None, reason: str) -> int:
    """``value`` when it is an integer (not a boolean) within [low, high], else Invalid with
    ``reason``: the one check for counts, windows and limits a request gives."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        raise Invalid(reason)
    return value
