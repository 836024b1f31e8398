"""Group commit on the event loop: the ledger's appends and an edge's outbox share it.

A commit's fixed cost (an fsync, a hand-over to a writer and back) is many events' worth, so
whatever is submitted while one commit is in flight goes into the next, in order of
submission, and each caller's future resolves with its own item's result once the commit has
returned. ``interval_s`` spaces commits' starts: under a steady trickle, items wait up to that
long to share a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from server.histogram import Histogram

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``commit(items)`` makes a batch durable and returns one result per item, or raises
    (then every waiter of that batch hears of it, and the next batch is tried as usual). A
    result that is an exception is that item's alone: its waiter hears of it, the others of
    their results, and followers are not told of it.
    ``waits``: each item's time from submission until durable. ``on_committed(items,
    results)``: told of each committed batch, on the loop, in order; its failure is logged,
    not the waiters'."""

    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[list[R]]],
        interval_s: float = 0.0,
        waits: Histogram | None = None,
        on_committed: Callable[[list[T], list[R]], None] | None = None,
    ) -> None:
        self._commit = commit
        self.interval_s = interval_s
        self._waits = waits
        self.on_committed = on_committed
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._submitted: list[float] = []  # loop time of each submission (when ``waits``)
        self._last_start = -1e9
        self._task: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        """Items waiting for the next commit."""
        return len(self._items)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next commit; its future resolves once that has returned."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if self._waits is not None:
            self._submitted.append(loop.time())
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return future

    async def idle(self, timeout: float | None = None) -> None:
        """Until nothing is pending or in flight, or ``timeout`` seconds have passed."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._items:
            wait = self._last_start + self.interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_start = loop.time()
            items, self._items = self._items, []
            futures, self._futures = self._futures, []
            submitted, self._submitted = self._submitted, []
            try:
                results = await self._commit(items)
            except Exception as exc:  # noqa: BLE001 - every waiter hears of the failure
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self._waits is not None:
                self._waits.observe_waits(submitted, loop.time())
            refused = False
            for future, result in zip(futures, results, strict=True):
                if isinstance(result, BaseException):
                    refused = True
                    if not future.done():
                        future.set_exception(result)
                elif not future.done():
                    future.set_result(result)
            if refused:
                kept = [
                    (i, r)
                    for i, r in zip(items, results, strict=True)
                    if not isinstance(r, BaseException)
                ]
                items, results = [i for i, _ in kept], [r for _, r in kept]
            if self.on_committed is not None and items:
                try:
                    self.on_committed(items, results)
                except Exception:  # noqa: BLE001 - a follower's fault is not the waiters'
                    log.exception("following a group commit failed")
