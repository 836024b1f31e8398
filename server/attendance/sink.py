"""Where a node's attendance events go: one small interface, two implementations, chosen once
at start (server/app.py), the way LiveKit picks a local or a Redis router.

- :class:`server.attendance.ledger.Ledger`: this node's own ledger (a single node, or a
  cluster's home node). Reports read it and follow its durable batches.
- :class:`server.cluster.outbox.StreamLedger`: an edge node's outbox, sent by Redis to the home
  node's ledger. It holds no record of its own: what the tracker reads of it is empty.

The tracker, the metrics, the admin page and the app's start and stop use this surface alone;
none of them asks which one it has."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Protocol

from server.attendance.events import Event
from server.attendance.signing import Checkpoint
from server.attendance.writer import Appended
from server.histogram import Histogram

Measure = tuple[str, str, str, float]  # (metric name, counter or gauge, help, value)


class AttendanceSink(Protocol):
    holds_record: bool
    """Whether this node holds the ledger: reports can be read (and warmed) here."""

    # -- writing, from the tracker -----------------------------------------------------------
    def submit(self, session: str, event: Event, at_ms: int | None = None) -> asyncio.Future:
        """Queue an event; the future resolves once it is durable (on this node's disk)."""
        ...

    async def append(self, session: str, event: Event, at_ms: int | None = None) -> Appended: ...

    async def store_checkpoint(self, cp: Checkpoint) -> None: ...

    # -- what the tracker and the routes read back (an edge: nothing) -------------------------
    def open_sessions(self) -> list[str]:
        """Sessions live when the process stopped: recovery closes their connections."""
        ...

    def scan(self, session: str) -> Iterator[tuple]: ...

    def append_now(self, session: str, event: Event, at_ms: int | None = None) -> Appended:
        """A synchronous append, for recovery at start (no event loop yet)."""
        ...

    def rows(self, session: str) -> list: ...

    def unsigned_sessions(self) -> list[str]: ...

    def head(self, session: str) -> tuple[int, str]: ...

    def checkpoints(self, session: str) -> list[Checkpoint]: ...

    # -- lifecycle and what it reports about itself -------------------------------------------
    def start(self) -> None:
        """Begin whatever runs beside the appends (an edge: its sender to Redis)."""
        ...

    async def aclose(self) -> None:
        """Stop, with what is durable kept (an edge: the last events sent while Redis is up)."""
        ...

    def follow(self, callback: Callable[[list[tuple], list[Appended]], None]) -> None:
        """Have ``callback`` told of each durable batch (the report cache follows the ledger)."""
        ...

    def status(self) -> dict:
        """What the admin page's cluster view shows of it."""
        ...

    def measures(self) -> list[Measure]:
        """Its counters and gauges for /metrics."""
        ...

    def histograms(self) -> list[tuple[str, str, Histogram]]:
        """Its latency histograms for /metrics: (name, help, histogram)."""
        ...
