"""Limits on what a stranger can repeat: connections not yet up, room-code guesses, and the
requests that each write a ledger event. Every refusal is a 429 with Retry-After.

Keys are chosen by who shares what: a township's phones share one NAT address and thousands
share the open link's token, so connections are counted per source address (with a cap well
above a classroom's), and events per participant (a member, a room). The numbers and their
settings are in docs/SECURITY.md.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable

from server.config import Config, Rate
from server.web.errors import HTTPProblem

TRACKED = 100_000  # keys a limiter remembers; the least recently seen go first


def too_many(what: str, retry_after_s: float) -> HTTPProblem:
    wait = max(1, math.ceil(retry_after_s))
    return HTTPProblem(429, f"too many {what}; try again in {wait} s", {"Retry-After": str(wait)})


class RateLimit:
    """A token bucket per key. ``clock`` is for tests (monotonic seconds)."""

    def __init__(self, what: str, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.what, self.rate, self._clock = what, rate, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one from ``key``'s bucket, or raise 429 with when the next one comes."""
        self._spend(key, 1)

    def check(self, key: str) -> None:
        """Raise 429 if ``key``'s bucket is empty, spending nothing: for limits on failures,
        checked before the attempt (else a limited guesser still learns a right guess)."""
        self._spend(key, 0)

    def _spend(self, key: str, cost: int) -> None:
        if self.rate.burst <= 0:
            return  # 0: no limit
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.rate.burst), now))
        tokens = min(self.rate.burst, tokens + (now - then) / self.rate.every_s)
        self._buckets[key] = (tokens - cost if tokens >= 1 else tokens, now)
        while len(self._buckets) > TRACKED:
            self._buckets.popitem(last=False)
        if tokens < 1:
            raise too_many(self.what, (1 - tokens) * self.rate.every_s)


class PendingConnections:
    """Connections answered but not yet connected, per source address: at most ``cap``; one
    that is not connected ``timeout_s`` after its answer is closed (it never joined)."""

    def __init__(self, cap: int, timeout_s: float) -> None:
        self.cap, self.timeout_s = cap, timeout_s
        self._by_address: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()
        self.expired = 0

    def pending(self, address: str) -> int:
        return self._by_address[address]

    def reserve(self, address: str) -> None:
        """Before negotiating: a slot for ``address``, or 429."""
        if self.cap > 0 and self._by_address[address] >= self.cap:
            raise too_many("connections not yet connected from this address", self.timeout_s)
        self._by_address[address] += 1

    def release(self, address: str) -> None:
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def follow(self, address: str, peer, stop: Callable[[], Awaitable[object]]) -> None:
        """The negotiation succeeded: hold the slot until ``peer`` connects or goes; past the
        timeout, ``stop()`` it."""
        task = asyncio.ensure_future(self._follow(address, peer, stop))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, address: str, peer, stop) -> None:
        waits = [
            asyncio.ensure_future(peer.connected.wait()),
            asyncio.ensure_future(peer.gone.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=self.timeout_s, return_when="FIRST_COMPLETED"
            )
            if not done:
                self.expired += 1
                await stop()
        finally:
            for wait in waits:
                wait.cancel()
            self.release(address)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Limits:
    """The relay's limits, from its settings (server/config.py)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.pending = PendingConnections(config.pending_per_address, config.connect_timeout_s)
        self.room_codes = RateLimit("room-code attempts", config.room_code_rate, clock)
        self.questions = RateLimit("questions", config.question_rate, clock)
        self.headcounts = RateLimit("headcount reports", config.headcount_rate, clock)
        self.feedback = RateLimit("feedback submissions", config.feedback_rate, clock)
