"""Where a lecture's viewers are served, and how this node's copy of it is fed: one small
interface, two implementations chosen once at start (server/app.py), the way LiveKit picks a
local or a Redis router.

- :class:`LocalPlacement`: one node. Every viewer is served here; nothing is announced.
- :class:`server.cluster.node.Cluster`: the least-loaded node takes a new viewer (a 307
  there), an edge pulls the lecture from its origin, and sessions are announced in Redis.

server/lectures/live.py and the WHEP route call this surface alone; neither asks which one it
has."""

from __future__ import annotations

from typing import Protocol

from media.session import SessionMedia


class Placement(Protocol):
    async def where(self, sid: str, asked: str | None) -> tuple[str, str] | None:
        """The node a new viewer of ``sid`` goes to, ``(node id, base URL)``, or None for here.
        ``asked``: the node the viewer was sent to already (it stays there)."""
        ...

    async def feed(self, media: SessionMedia) -> None:
        """Make sure this node's copy of the lecture receives it (an edge pulls it from the
        origin); refusals.Unavailable or Unreachable when it cannot."""
        ...

    async def lookup(self, sid: str) -> dict:
        """A session this node's database does not hold but another node announced: its
        ``video_codec`` and ``status``; {} when none did."""
        ...

    async def opened(self, sid: str, video_codec: str, status: str) -> None: ...

    async def went_live(self, sid: str, video_codec: str) -> None:
        """The lecture's publisher is here now."""
        ...

    async def ended(self, sid: str) -> None: ...


class LocalPlacement:
    """One node: every viewer here, every session in this node's database."""

    async def where(self, sid: str, asked: str | None) -> tuple[str, str] | None:
        return None

    async def feed(self, media: SessionMedia) -> None:
        return None

    async def lookup(self, sid: str) -> dict:
        return {}

    async def opened(self, sid: str, video_codec: str, status: str) -> None:
        return None

    async def went_live(self, sid: str, video_codec: str) -> None:
        return None

    async def ended(self, sid: str) -> None:
        return None
