"""The tests' one way to wait for something: poll a condition against a deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition not reached in time",
) -> Any:
    """Poll ``predicate`` (a plain or an async function) until it returns something true, and
    return that; fail the test with ``what`` once ``timeout`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(interval)
