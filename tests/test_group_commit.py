"""The group commit the ledger and an edge's outbox share: order, sharing, failures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.attendance.group_commit import GroupCommit
from server.histogram import Histogram


class Store:
    """A commit target that keeps what it is given, and can be told to refuse a batch or
    to hold one until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.refuse: set[str] = set()  # a batch holding one of these fails
        self.gate: asyncio.Event | None = None

    async def commit(self, items: list[str]) -> list[str]:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse & set(items):
            raise OSError("disk full")
        self.batches.append(list(items))
        return [f"{item}:ok" for item in items]


async def test_what_comes_while_a_commit_is_in_flight_goes_into_the_next_in_order():
    store = Store()
    waits = Histogram()
    followed: list[tuple[list[str], list[str]]] = []
    group = GroupCommit(
        store.commit, waits=waits, on_committed=lambda i, r: followed.append((i, r))
    )
    store.gate = asyncio.Event()
    first = group.submit("a")
    await asyncio.sleep(0)  # the first commit is under way, held at the gate
    rest = [group.submit(x) for x in "bcd"]
    assert group.pending == 3
    store.gate.set()
    assert await asyncio.gather(first, *rest) == ["a:ok", "b:ok", "c:ok", "d:ok"]
    assert store.batches == [["a"], ["b", "c", "d"]]
    assert followed == [(["a"], ["a:ok"]), (["b", "c", "d"], ["b:ok", "c:ok", "d:ok"])]
    assert waits.count == 4 and group.pending == 0


async def test_a_failed_commit_fails_its_own_waiters_only():
    store = Store()
    store.refuse = {"bad"}
    store.gate = asyncio.Event()
    group = GroupCommit(store.commit)
    doomed = [group.submit("x"), group.submit("bad")]
    await asyncio.sleep(0)
    later = group.submit("y")  # waits for the next commit
    store.gate.set()
    for future in doomed:
        with pytest.raises(OSError, match="disk full"):
            await future
    assert await later == "y:ok"
    assert store.batches == [["y"]]


async def test_commits_start_at_least_the_interval_apart():
    store = Store()
    group = GroupCommit(store.commit, interval_s=0.05)
    loop = asyncio.get_running_loop()
    await group.submit("a")
    started = loop.time()
    second = [group.submit(x) for x in "bc"]
    assert group.pending == 2  # held for the interval, not committed at once
    await asyncio.gather(*second)
    assert loop.time() - started >= 0.04
    assert store.batches == [["a"], ["b", "c"]]


async def test_a_follower_that_fails_is_logged_and_the_waiters_still_hear(caplog):
    store = Store()

    def broken(items: list[str], results: list[str]) -> None:
        raise RuntimeError("a report's fault")

    group = GroupCommit(store.commit, on_committed=broken)
    with caplog.at_level(logging.ERROR, logger="server.attendance.group_commit"):
        assert await group.submit("a") == "a:ok"
    assert "following a group commit failed" in caplog.text
    assert await group.submit("b") == "b:ok"  # and it goes on


async def test_idle_waits_for_the_commit_in_flight():
    store = Store()
    store.gate = asyncio.Event()
    group = GroupCommit(store.commit)
    pending = group.submit("a")
    await group.idle(timeout=0.01)  # bounded: the gate is shut
    assert not pending.done()
    store.gate.set()
    await group.idle()
    assert pending.done() and store.batches == [["a"]]
