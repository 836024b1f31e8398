"""The tests' one way to wait for something: poll a condition against a deadline."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import time
import urllib.request
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


def wait_health(port: int, timeout: float = 20.0) -> dict:
    """For a server started as its own process: poll its health check on ``port`` until it
    answers (and return what it said), raising the last connection error after ``timeout``
    seconds. Blocking: from a coroutine, run it in an executor."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health") as resp:
                return json.load(resp)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    """End a process the test started: SIGTERM, then SIGKILL if it has not gone in 20 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
