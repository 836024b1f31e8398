"""Turns what the relay sees (connections, receiver reports) and what pages say (heartbeats)
into ledger events; signs checkpoints; ends sessions with a receipt; recovers after a crash."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from media.session import MediaEvent
from server.attendance.events import (
    End,
    Event,
    Heartbeat,
    Join,
    Leave,
    Replay,
    Seen,
    Start,
    data_from_json,
)
from server.attendance.ledger import Appended, now_ms
from server.attendance.signing import Checkpoint, CheckpointLog, LedgerKey, receipt, sign_head
from server.attendance.sink import AttendanceSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """Who a viewer connection stands for, fixed when it joins."""

    participant: str  # "member:<id>", "room:<code>", "viewer:<peer>", "staff:<role>"
    identified_by: str  # "token", "open" or "none"
    role: str
    subject: str | None
    address: str
    audio_only: bool


@dataclass
class _Peer:
    """A joined connection's evidence so far. Who it is lives once, in the media session's
    registry (``SessionMedia.identities``) while it is live, and in its Join event after."""

    session: str
    last_evidence_ms: int
    last_beat_ms: int | None = None  # the page's last heartbeat taken
    joined_ms: int = 0


class HeartbeatTooSoon(Exception):
    """A page's heartbeat sooner than the least gap after its last one: refused, so that no
    page can fill the ledger faster than a page needs to (one every few seconds)."""

    def __init__(self, gap_s: float) -> None:
        super().__init__(f"one heartbeat every {gap_s:g} s at most")


class ReportTooSoon(Exception):
    """A replay page's progress report sooner than the least gap after the same reporter's
    last one (a member's, across views and devices): refused and not recorded."""

    def __init__(self, gap_s: float, retry_after_s: float) -> None:
        super().__init__(f"one replay progress report every {gap_s:g} s at most")
        self.retry_after_s = retry_after_s


REPORTERS_KEPT = 10_000  # past this many, reporters quiet for longer than the gap are forgotten

ClosePeer = Callable[[str, str, str], Awaitable[bool]]  # (session, peer, reason)
# (session, peer) -> the highest sequence numbers its receiver reports acknowledged, per kind
RelayEvidence = Callable[[str, str], "dict[str, int] | None"]


class Attendance:
    def __init__(
        self,
        ledger: AttendanceSink,
        key: LedgerKey,
        checkpoint_log: CheckpointLog,
        close_peer: ClosePeer,
        heartbeat_timeout_s: float = 45.0,
        checkpoint_interval_s: float = 60.0,
        heartbeat_min_gap_s: float = 0.0,
        replay_min_gap_s: float = 0.0,
        relay_evidence: RelayEvidence | None = None,
        seen_interval_s: float = 10.0,
    ) -> None:
        """``replay_min_gap_s``: least time between two replay progress reports of one
        reporter (the app gives half the pages' reporting interval). ``relay_evidence``: for
        a connection whose page sends no heartbeat (a standard WHEP player), what the relay
        sees of it, recorded every ``seen_interval_s`` as a ``seen`` event."""
        self.ledger = ledger
        self.key = key
        self.checkpoint_log = checkpoint_log
        self._close_peer = close_peer
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.heartbeat_min_gap_s = heartbeat_min_gap_s
        self.replay_min_gap_s = replay_min_gap_s
        self._relay_evidence = relay_evidence
        self.seen_interval_s = seen_interval_s
        self._last_report_ms: dict[tuple[str, str], int] = {}  # (session, reporter) -> ms
        self.peers: dict[str, _Peer] = {}
        self._started: set[str] = set()
        # sessions not live with events since their last checkpoint (an export, a replay's
        # progress, a change of the credit rule after the lecture): signed at the next tick
        self._unsigned: set[str] = set()
        self._signed: dict[str, int] = {}  # session -> seq of its last checkpoint
        self._newest: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -----------------------------------------------------------------------
    def recover(self) -> int:
        """After a crash: close every interval left open at its last evidence, and mark for
        the first tick the sessions whose newest events no checkpoint covers.

        Only sessions not ended are read (an ended session's viewers all left before its
        end was signed), and of their events only the kinds that open and close intervals
        are parsed: a restart must not read a year of lectures again."""
        closed = 0
        for session in self.ledger.open_sessions():
            open_peers: dict[str, int] = {}
            for _, at_ms, kind, data in self.ledger.scan(session):
                if kind in ("heartbeat", "seen"):
                    peer = data_from_json(data)["peer"]
                    if peer in open_peers:
                        open_peers[peer] = at_ms
                elif kind == "join":
                    open_peers[data_from_json(data)["peer"]] = at_ms
                elif kind == "leave":
                    open_peers.pop(data_from_json(data)["peer"], None)
                elif kind == "start":
                    self._started.add(session)
            for peer, last_ms in open_peers.items():
                self.ledger.append_now(session, Leave(peer, "server_restart"), last_ms)
                closed += 1
        if closed:
            log.warning("closed %d attendance intervals left open by a restart", closed)
        # events the last run appended after its last tick (the restart's own leaves too)
        self._unsigned.update(self.ledger.unsigned_sessions())
        return closed

    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._checkpoint_loop()))
        if self.heartbeat_timeout_s > 0:
            self._tasks.append(asyncio.ensure_future(self._timeout_loop()))
        if self._relay_evidence is not None and self.seen_interval_s > 0:
            self._tasks.append(asyncio.ensure_future(self._seen_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.drain()
        for session in [*self._started, *self._unsigned]:
            await self.checkpoint(session)

    async def drain(self) -> None:
        """Wait until every event handed to the ledger before this call is on disk.

        The ledger makes appends durable in the order they were submitted, so the newest
        write stands for all before it: each caller waits on one future (a leaving member's
        DELETE did a gather over every pending write, which under a join surge cost a quarter
        of the relay's CPU), and only on the one that was newest when it came: waiting again
        for whatever arrived meanwhile kept a DELETE waiting as long as members kept joining
        or leaving, a wait and a wake-up per commit."""
        newest = self._newest
        if newest is not None and not newest.done():
            await asyncio.wait((newest,))

    def live_sessions(self) -> list[str]:
        """The sessions started and not ended."""
        return list(self._started)

    # -- events from the media plane -----------------------------------------------------
    def on_media_event(self, event: MediaEvent) -> None:
        if event.kind == "viewer_connected" and isinstance(event.identity, Identity):
            ident = event.identity
            at = now_ms()
            self.peers[event.peer_id] = _Peer(event.session_id, at, joined_ms=at)
            self._submit(
                event.session_id,
                Join(
                    ident.participant,
                    event.peer_id,
                    ident.identified_by,
                    ident.address,
                    ident.audio_only,
                ),
            )
        elif event.kind == "viewer_gone":
            peer = self.peers.pop(event.peer_id, None)
            if peer is not None:  # a viewer that never got media never joined
                self._submit(event.session_id, Leave(event.peer_id, event.reason or "delete"))
        elif event.kind == "publisher_connected" and event.session_id not in self._started:
            self._started.add(event.session_id)
            self._submit(event.session_id, Start(event.peer_id))

    def _submit(self, session: str, event: Event) -> None:
        future = self.ledger.submit(session, event)
        self._newest = future
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("ledger append failed: %s", future.exception())

    # -- heartbeats from pages -----------------------------------------------------------
    def heartbeat(
        self,
        peer_id: str,
        frames_decoded: int,
        audio_playing: bool,
        visible: bool,
        rr: dict[str, int],
        played_ms: int = -1,
    ) -> asyncio.Future[Appended]:
        """Queue the heartbeat; the future resolves once it is durable. (Not a coroutine:
        thousands a second each save a frame to create and resume.) HeartbeatTooSoon when it
        comes within ``heartbeat_min_gap_s`` of the connection's last one."""
        peer = self.peers[peer_id]
        now = now_ms()
        gap_ms = self.heartbeat_min_gap_s * 1000
        if peer.last_beat_ms is not None and now - peer.last_beat_ms < gap_ms:
            raise HeartbeatTooSoon(self.heartbeat_min_gap_s)
        peer.last_beat_ms = peer.last_evidence_ms = now
        event = Heartbeat(
            peer_id,
            frames_decoded,
            audio_playing,
            visible,
            rr.get("video", -1),
            rr.get("audio", -1),
            played_ms,
        )
        return self.ledger.submit(peer.session, event)

    async def replay_report(self, session: str, reporter: str, event: Replay) -> Appended:
        """Append a replay page's progress report, once durable. ``reporter``: whom the gap
        holds for (a member's participant id, whichever view or device sends it).
        ReportTooSoon within ``replay_min_gap_s`` of the reporter's last report taken."""
        now = now_ms()
        key = (session, reporter)
        gap_ms = int(self.replay_min_gap_s * 1000)
        last = self._last_report_ms.get(key)
        if last is not None and now - last < gap_ms:
            raise ReportTooSoon(self.replay_min_gap_s, (last + gap_ms - now) / 1000)
        if len(self._last_report_ms) >= REPORTERS_KEPT:
            self._last_report_ms = {
                k: t for k, t in self._last_report_ms.items() if now - t < gap_ms
            }
        self._last_report_ms[key] = now
        done = await self.ledger.append(session, event, now)
        self.appended_to((session,))
        return done

    async def append(self, session: str, event: Event) -> Appended:
        done = await self.ledger.append(session, event)
        self.appended_to((session,))
        return done

    async def append_signed(self, session: str, event: Event) -> Appended:
        """Append ``event`` and sign the head at once, not at the next tick: what an admin
        reads (an export carries its own reading) or decides (a credit rule) is found signed."""
        done = await self.append(session, event)
        await self.checkpoint(session)
        return done

    def appended_to(self, sessions: Iterable[str]) -> None:
        """Events were appended to these sessions (here, or by the cluster's stream writer
        for an edge). One that is not live had no checkpoint to follow (after the lecture:
        who read personal data, replay time that earns hours), and a chain alone cannot show
        its last events cut off: signed at the next tick, as a live session's are."""
        self._unsigned.update(s for s in sessions if s not in self._started)

    # -- signing -------------------------------------------------------------------------
    async def checkpoint(self, session: str, final: bool = False) -> dict | None:
        cp = sign_head(self.key, self.ledger, session, now_ms(), final, self._signed.get(session))
        if cp is None:
            return None
        await self.ledger.store_checkpoint(cp)
        self.checkpoint_log.append(cp)
        self._signed[session] = cp.seq
        return receipt(cp, self.key.public)

    async def end_session(self, session: str, by: str) -> dict:
        await self.drain()
        await self.ledger.append(session, End(by))
        self._started.discard(session)
        return await self.checkpoint(session, final=True)

    def final_receipt(self, session: str) -> dict | None:
        finals = [c for c in self.ledger.checkpoints(session) if c.final]
        return receipt(finals[-1], self.key.public) if finals else None

    def all_checkpoints(self, session: str) -> list[Checkpoint]:
        """The database's checkpoints and the separate log's (a rewrite may spare one)."""
        return self.ledger.checkpoints(session) + self.checkpoint_log.read(session)

    # -- background ----------------------------------------------------------------------
    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval_s)
            await self.drain()
            due, self._unsigned = [*self._started, *self._unsigned], set()
            for session in due:
                try:
                    await self.checkpoint(session)
                except Exception:  # noqa: BLE001 - try again at the next tick
                    log.exception("checkpoint of %s failed", session)
                    if session not in self._started:
                        self._unsigned.add(session)

    async def _timeout_loop(self) -> None:
        interval = min(5.0, self.heartbeat_timeout_s / 3)
        while True:
            await asyncio.sleep(interval)
            deadline = now_ms() - int(self.heartbeat_timeout_s * 1000)
            for peer_id, peer in list(self.peers.items()):
                # a page of ours that fell silent; one that never spoke is a standard player,
                # watched until ICE consent says it is gone (its record says so: ``seen``)
                if peer.last_beat_ms is not None and peer.last_evidence_ms < deadline:
                    await self._close_peer(peer.session, peer_id, "heartbeat_timeout")

    async def _seen_loop(self) -> None:
        """The relay's evidence for connections whose page sends no heartbeat: one ``seen``
        event per connection and interval (a heartbeat's cost, for the few such viewers)."""
        young_ms = int(self.seen_interval_s * 2000)  # our page's first heartbeat comes sooner
        while True:
            await asyncio.sleep(self.seen_interval_s)
            now = now_ms()
            for peer_id, peer in list(self.peers.items()):
                if peer.last_beat_ms is not None or now - peer.joined_ms < young_ms:
                    continue
                rr = self._relay_evidence(peer.session, peer_id)
                if rr is not None:
                    peer.last_evidence_ms = now
                    event = Seen(peer_id, rr.get("video", -1), rr.get("audio", -1))
                    self._submit(peer.session, event)
