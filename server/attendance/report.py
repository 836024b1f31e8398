"""What the ledger says happened, per participant: intervals, seconds watched, credit.

A span between two evidence points of a connection counts as watched only when the page said
it was playing (frames decoded advanced, or audio playing) *and* the relay's receiver reports
from that connection advanced over the same span. A member's connections count once (union);
a member checked in at a room is credited with the room's watched time after the check-in.

A roll call (点名) is answered when the answer came within its window from the participant's
own connection, and that connection's evidence covers the moment (a watched span, or the
relay's own ``seen`` before its page's first heartbeat): a page that answers on a connection
whose media was cut has no such span, and counts as absent. A member checked
in at a room has the room's answers given after the check-in. When the rule requires K roll
calls, a member who answered fewer (of those held, at most K) earns nothing by live time;
replay then counts only where the rule says replay needs no roll call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from server.attendance.events import Event, Heartbeat, data_from_json
from server.attendance.ledger import Row
from server.config import DEFAULT_THRESHOLD

MAX_SPAN_MS = 30_000  # a heartbeat vouches for at most this much time before it


@dataclass
class ParticipantReport:
    participant: str
    member_id: str = ""
    name: str = ""
    place: str = ""  # township (members) or room name (rooms)
    phone: str = ""
    identified_by: str = ""
    address: str = ""
    first_join_ms: int | None = None
    last_leave_ms: int | None = None
    intervals: list[tuple[int, int]] = field(default_factory=list)  # connected, merged
    watched: list[tuple[int, int]] = field(default_factory=list)  # counted, merged
    unverified_s: float = 0.0  # page said playing, relay saw nothing reach it
    # media reached a connection whose page sends no heartbeat (a standard WHEP player):
    # the relay's evidence alone, shown apart, never credited
    relay_only: list[tuple[int, int]] = field(default_factory=list)
    joins: int = 0
    leave_reasons: list[str] = field(default_factory=list)
    via_room: str = ""
    replayed: list[tuple[int, int]] = field(default_factory=list)  # media ms, merged
    rollcalls: list[str] = field(default_factory=list)  # the roll calls answered, in order
    credited: bool = False

    @property
    def seconds_watched(self) -> float:
        return sum(b - a for a, b in self.watched) / 1000

    @property
    def relay_only_seconds(self) -> float:
        return sum(b - a for a, b in merge(self.relay_only)) / 1000

    @property
    def replay_seconds(self) -> float:
        return sum(b - a for a, b in self.replayed) / 1000

    @property
    def total_seconds(self) -> float:
        return self.seconds_watched + self.replay_seconds

    @property
    def reconnects(self) -> int:
        return max(self.joins - 1, 0)


@dataclass
class SessionReport:
    session: str
    start_ms: int | None
    end_ms: int | None
    threshold: float
    participants: dict[str, ParticipantReport]
    headcounts: dict[str, int]
    checkins: dict[str, list[tuple[str, int]]]  # room -> [(member, at)]
    concurrency: list[tuple[int, int]] = field(default_factory=list)  # (ms, viewers), thinned
    # what credit was judged against: the end, or while live the time the report was made
    # at (its ``now_ms``, else its last event)
    closed_ms: int | None = None
    replay_credit: bool = True  # whether replay time counted toward credit
    # every change: (at, by, percent, replay credit, roll calls required, replay without)
    policies: list[tuple] = field(default_factory=list)
    rollcalls: list[tuple[str, int]] = field(default_factory=list)  # (call, opened ms) held
    rollcalls_required: int = 0  # of those held, at most this many, to be credited
    replay_without_rollcalls: bool = False

    @property
    def live(self) -> bool:
        return self.start_ms is not None and self.end_ms is None

    @property
    def length_s(self) -> float:
        """From the start to the end, or while live to what the report was made as of (the
        audit page said 0 s of a lecture under way)."""
        close = self.end_ms or self.closed_ms
        if self.start_ms is None or close is None:
            return 0.0
        return max(close - self.start_ms, 0) / 1000


def merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intersect(spans: list[tuple[int, int]], start: int) -> list[tuple[int, int]]:
    return [(max(a, start), b) for a, b in spans if b > start]


REPLAY_SLACK_MS = 2_000  # a position may run this much ahead of the wall clock and still count

# The kinds a report reads the data of; the others only move the clock (``last_ms``).
_FOLDED = frozenset(
    (
        "join", "heartbeat", "seen", "leave", "headcount", "checkin", "replay", "policy",
        "roll_call", "roll_answer",
    )
)  # fmt: skip


class _Conn:
    """One viewer connection (``peer``) as its events so far describe it."""

    __slots__ = (
        "participant",
        "identified_by",
        "address",
        "join",
        "leave",
        "reason",
        "at",
        "frames",
        "video_rr",
        "audio_rr",
        "watched",
        "unverified",
        "relay_only",
    )

    def __init__(self, at_ms: int, d: dict) -> None:
        self.participant: str = d["participant"]
        self.identified_by: str = d["identified_by"]
        self.address: str = d["address"]
        self.join = at_ms
        self.leave: int | None = None
        self.reason: str | None = None
        self.at, self.frames, self.video_rr, self.audio_rr = at_ms, 0, -1, -1
        self.watched: list[tuple[int, int]] = []  # in order; overlapping spans joined
        self.unverified = 0
        self.relay_only: list[tuple[int, int]] = []  # spans the relay alone vouches for

    def open_at(self, at_ms: int) -> bool:
        """Whether a heartbeat at ``at_ms`` still belongs to this connection. A ``node_lost``
        leave is the ledger writer's inference, at the last evidence it had: an edge that
        comes back sends what it acknowledged before it died, and such a heartbeat moves the
        leave to itself."""
        if self.leave is None:
            return True
        if self.reason == "node_lost" and at_ms >= self.leave:
            self.leave = at_ms
            return True
        return False

    def heartbeat(self, at_ms: int, d: dict) -> None:
        self.beat(
            at_ms, d["frames_decoded"], d["audio_playing"], d["video_rr"], d["audio_rr"],
            d.get("played_ms", -1),
        )  # fmt: skip

    def beat(
        self,
        at_ms: int,
        frames: int,
        audio_playing: bool,
        video_rr: int,
        audio_rr: int,
        played_ms: int = -1,
    ) -> None:
        if at_ms < self.at:
            # older than evidence already folded (a cluster edge resent what a restarted
            # Redis lost after later events went through): it vouches for nothing new
            return
        start = max(self.at, at_ms - MAX_SPAN_MS)
        if played_ms >= 0:
            # the page played only part of the span (a stall, a hand-over): the rest earns
            # nothing. Where in the span it stalled the page does not say; the end is kept.
            start = max(start, at_ms - played_ms)
        page = audio_playing or frames > self.frames
        relay = (video_rr >= 0 and video_rr != self.video_rr) or (
            audio_rr >= 0 and audio_rr != self.audio_rr
        )
        if page and relay:
            watched = self.watched
            if watched and watched[-1][0] <= start <= watched[-1][1]:
                watched[-1] = (watched[-1][0], max(watched[-1][1], at_ms))
            else:
                watched.append((start, at_ms))
        elif page:
            self.unverified += at_ms - start
        self.at, self.frames, self.video_rr, self.audio_rr = at_ms, frames, video_rr, audio_rr

    def seen(self, at_ms: int, d: dict) -> None:
        """The relay's evidence with no page's: the span counts apart, when media reached
        the connection over it (its receiver reports advanced)."""
        if at_ms < self.at:
            return
        start = max(self.at, at_ms - MAX_SPAN_MS)
        video_rr, audio_rr = d["video_rr"], d["audio_rr"]
        if (video_rr >= 0 and video_rr != self.video_rr) or (
            audio_rr >= 0 and audio_rr != self.audio_rr
        ):
            spans = self.relay_only
            if spans and spans[-1][1] >= start:
                spans[-1] = (spans[-1][0], at_ms)
            else:
                spans.append((start, at_ms))
        self.at, self.video_rr, self.audio_rr = at_ms, video_rr, audio_rr


class ReportFold:
    """A session's ledger folded, row by row in sequence order, into what its report needs.

    Fed again later with only the rows appended since (``seq`` is the last one folded in), so
    the report of a long session is not rebuilt from its first event each time it is asked
    for; ``report()`` leaves the fold as it was. Heartbeats' spans are joined as they come:
    a 90-minute lecture for 4,000 members is about two million of them.
    """

    def __init__(self, session: str) -> None:
        self.session = session
        self.seq = 0
        self.lock = threading.Lock()  # for whoever shares a fold between threads
        self.start: int | None = None
        self.end: int | None = None
        self.last_ms = 0
        self.conns: dict[str, _Conn] = {}
        self.headcounts: dict[str, int] = {}
        self.checkins: dict[str, list[tuple[str, int]]] = {}
        self._replay_last: dict[tuple[str, str], tuple[int, int, bool]] = {}
        self._replay_at: dict[str, int] = {}  # participant -> its last report's ms, any view
        self._replayed: dict[str, list[tuple[int, int]]] = {}
        # ``policy`` events, (at, by, percent, replay credit, roll calls required, replay
        # without them): the last overrides the report's own arguments (the store's
        # settings, which sessions older than the event had)
        self.policies: list[tuple] = []
        self.calls: dict[str, tuple[int, int]] = {}  # roll call -> (opened ms, window ms)
        self.answers: list[tuple[str, str, str, int, int]] = []  # call, who, peer, at, count

    def feed(self, rows: Iterable[tuple[int, int, str, str]]) -> ReportFold:
        """Fold in ``(seq, at_ms, kind, data JSON)`` rows, as ``Ledger.scan`` reads them."""
        add = self.add
        for seq, at_ms, kind, data in rows:
            add(seq, at_ms, kind, data_from_json(data) if kind in _FOLDED else None)
        return self

    def add_rows(self, rows: Iterable[Row]) -> ReportFold:
        for row in rows:
            self.add(row.seq, row.at_ms, row.kind, row.data)
        return self

    def add_event(self, seq: int, at_ms: int, event: Event) -> None:
        """An event in hand, as the ledger made it durable: a heartbeat (nearly all of them)
        without a dict made for it."""
        if type(event) is Heartbeat:
            self.seq, self.last_ms = seq, at_ms
            conn = self.conns.get(event.peer)
            if conn is not None and conn.open_at(at_ms):
                conn.beat(
                    at_ms, event.frames_decoded, event.audio_playing, event.video_rr,
                    event.audio_rr, event.played_ms,
                )  # fmt: skip
        else:
            self.add(seq, at_ms, event.kind, event.data() if event.kind in _FOLDED else None)

    def add(self, seq: int, at_ms: int, kind: str, d: dict | None) -> None:
        self.seq = seq
        self.last_ms = at_ms
        if kind == "heartbeat":
            conn = self.conns.get(d["peer"])
            if conn is not None and conn.open_at(at_ms):
                conn.heartbeat(at_ms, d)
        elif kind == "seen":
            conn = self.conns.get(d["peer"])
            if conn is not None and conn.open_at(at_ms):
                conn.seen(at_ms, d)
        elif kind == "join":
            self.conns[d["peer"]] = _Conn(at_ms, d)
        elif kind == "leave":
            conn = self.conns.get(d["peer"])
            if conn is not None:
                conn.leave, conn.reason = at_ms, d["reason"]
        elif kind == "replay":
            self._replay(at_ms, d)
        elif kind == "policy":
            self.policies.append(
                (
                    at_ms, d["by"], d["threshold_percent"], bool(d["replay_credit"]),
                    d.get("rollcalls_required", 0), bool(d.get("replay_without_rollcalls")),
                )
            )  # fmt: skip
        elif kind == "roll_call":
            self.calls.setdefault(d["call"], (at_ms, d["window_s"] * 1000))
        elif kind == "roll_answer":
            self.answers.append((d["call"], d["participant"], d["peer"], at_ms, d["count"]))
        elif kind == "start" and self.start is None:
            self.start = at_ms
        elif kind == "end":
            self.end = at_ms
        elif kind == "headcount":
            self.headcounts[d["room"]] = d["count"]
        elif kind == "checkin":
            self.checkins.setdefault(d["room"], []).append((d["member"], at_ms))

    def _replay(self, at_ms: int, d: dict) -> None:
        """Replay: between two reports of one page that both say playing, the media span
        played, when the position advanced no faster than the wall clock (plus slack). A
        seek ahead earns nothing for what it skipped; spans watched twice merge.

        A span counts for at most the wall time since the participant's previous report,
        from whichever page: reports sent back to back, or from several pages at once,
        earn no more than the time they took."""
        who = d["participant"]
        key = (who, d["view"])
        prev = self._replay_last.get(key)
        self._replay_last[key] = (at_ms, d["position_ms"], d["playing"])
        since = at_ms - self._replay_at.get(who, at_ms)
        self._replay_at[who] = at_ms
        if prev is None or not (prev[2] and d["playing"]):
            return
        advanced = d["position_ms"] - prev[1]
        if 0 < advanced <= (at_ms - prev[0]) * 1.25 + REPLAY_SLACK_MS:
            credited = min(advanced, since)
            if credited > 0:
                self._replayed.setdefault(who, []).append((prev[1], prev[1] + credited))

    def replay_spans(self) -> dict[str, list[tuple[int, int]]]:
        return {p: merge(s) for p, s in self._replayed.items()}

    def _credits_of(self, participant: str) -> set[str]:
        """The participant and the rooms that checked them in."""
        kind, _, ident = participant.partition(":")
        rooms = set()
        if kind == "member":
            for code, entries in self.checkins.items():
                if any(member == ident for member, _ in entries):
                    rooms.add(f"room:{code}")
        return {participant} | rooms

    def answered(self, wanted: set[str] | None = None) -> dict[str, dict[str, int]]:
        """participant -> {roll call: when} for the answers that count: within the call's
        window, from the participant's own connection, at a moment media reached it (a
        watched span of it, or the relay's own evidence before the page's first heartbeat).
        The first such answer a call."""
        out: dict[str, dict[str, int]] = {}
        for call, who, peer, at, _ in self.answers:
            if wanted is not None and who not in wanted:
                continue
            opened = self.calls.get(call)
            if opened is None or not opened[0] <= at <= opened[0] + opened[1]:
                continue
            conn = self.conns.get(peer)
            if conn is None or conn.participant != who:
                continue
            # media reached it then: a span its page and the relay vouch for, or (before its
            # page's first heartbeat) one the relay's own evidence alone does
            if any(a <= at <= b for a, b in conn.watched) or any(
                a <= at <= b for a, b in conn.relay_only
            ):
                out.setdefault(who, {}).setdefault(call, at)
        return out

    def steps(self) -> list[tuple[int, int]]:
        """(ms, connections open) after each join and leave, from the connections as they
        stand: a ``node_lost`` leave that late heartbeats moved ends where they do."""
        changes = [(c.join, 1) for c in self.conns.values()]
        changes += [(c.leave, -1) for c in self.conns.values() if c.leave is not None]
        changes.sort()  # at one ms, leaves before joins: no peak that never was
        open_now, steps = 0, []
        for ms, change in changes:
            open_now += change
            steps.append((ms, open_now))
        return steps

    def report(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        names: dict[str, tuple[str, str, str]] | None = None,
        rooms: dict[str, str] | None = None,
        now_ms: int | None = None,
        replay_credit: bool = True,
        only: str | None = None,
    ) -> SessionReport:
        """``names``: member id -> (name, township, phone); ``rooms``: room code -> name.
        ``only``: that participant alone (with the rooms that credit them, if any): what a
        member reading their own record needs, a small part of the whole report's work."""
        names = names or {}
        rooms = rooms or {}
        required, replay_without = 0, False
        if self.policies:
            _, _, percent, replay_credit, required, replay_without = self.policies[-1]
            threshold = percent / 100
        close_at = self.end or now_ms or self.last_ms
        people: dict[str, ParticipantReport] = {}
        wanted = None if only is None else self._credits_of(only)
        for c in self.conns.values():
            if wanted is not None and c.participant not in wanted:
                continue
            rep = people.get(c.participant)
            if rep is None:
                rep = people[c.participant] = _participant(c.participant, names, rooms)
                rep.identified_by = c.identified_by
                rep.address = c.address
            leave = c.leave if c.leave is not None else close_at
            rep.joins += 1
            rep.intervals.append((c.join, leave))
            rep.watched.extend(c.watched)
            rep.unverified_s += c.unverified / 1000
            rep.relay_only.extend(c.relay_only)
            if c.reason:
                rep.leave_reasons.append(c.reason)
            rep.first_join_ms = (
                c.join if rep.first_join_ms is None else min(rep.first_join_ms, c.join)
            )
            rep.last_leave_ms = (
                leave if rep.last_leave_ms is None else max(rep.last_leave_ms, leave)
            )

        answered = self.answered(wanted)
        # members checked in at a room get the room's watched time (and its answers to roll
        # calls) after their check-in
        for code, entries in self.checkins.items():
            room = people.get(f"room:{code}")
            for member, at in entries:
                if only is not None and only != f"member:{member}":
                    continue
                rep = people.get(f"member:{member}")
                if rep is None:
                    rep = people[f"member:{member}"] = _participant(
                        f"member:{member}", names, rooms
                    )
                    rep.identified_by = "checkin"
                rep.via_room = rooms.get(code, code)
                for call, at_answer in answered.get(f"room:{code}", {}).items():
                    if at <= at_answer:
                        answered.setdefault(f"member:{member}", {}).setdefault(call, at_answer)
                if room is not None:
                    rep.watched.extend(intersect(merge(room.watched), at))
                    rep.intervals.extend(intersect(room.intervals, at))
                    if rep.first_join_ms is None:
                        rep.first_join_ms = max(at, room.first_join_ms or at)
                        rep.last_leave_ms = room.last_leave_ms

        replayed = self._replayed if only is None else {only: self._replayed.get(only, [])}
        for pid, spans in replayed.items():
            if not spans:
                continue
            spans = merge(spans)
            rep = people.get(pid)
            if rep is None:
                rep = people[pid] = _participant(pid, names, rooms)
                rep.identified_by = "token"
            rep.replayed = spans

        report = SessionReport(
            self.session,
            self.start,
            self.end,
            threshold,
            people,
            dict(self.headcounts),
            {room: list(entries) for room, entries in self.checkins.items()},
            thin(self.steps()) if only is None else [],
            close_at,
            replay_credit,
            list(self.policies),
            [(call, opened) for call, (opened, _) in self.calls.items()],
            required,
            replay_without,
        )
        length = (close_at - self.start) / 1000 if self.start is not None else 0.0
        need = min(required, len(self.calls))
        for rep in people.values():
            rep.intervals = merge(rep.intervals)
            rep.watched = merge(rep.watched)
            mine = answered.get(rep.participant, {})
            rep.rollcalls = [call for call in self.calls if call in mine]
            present = len(rep.rollcalls) >= need  # live time stands on the roll calls
            replays = replay_credit and (present or replay_without)
            counted = (rep.seconds_watched if present else 0.0) + (
                rep.replay_seconds if replays else 0.0
            )
            rep.credited = (
                rep.participant.startswith("member:")
                and length > 0
                and min(counted, length) >= threshold * length
            )
        return report


def replay_spans(rows: list[Row]) -> dict[str, list[tuple[int, int]]]:
    """Per participant, the media spans a replay page actually played (see ReportFold)."""
    return ReportFold("").add_rows(rows).replay_spans()


def build_report(
    session: str, rows: Iterable[Row], threshold: float = DEFAULT_THRESHOLD, **options
) -> SessionReport:
    """The report of ``rows`` (a whole session's, in order), folded at once; ``options``:
    those of ``ReportFold.report``."""
    return ReportFold(session).add_rows(rows).report(threshold, **options)


def thin(points: list[tuple[int, int]], max_points: int = 400) -> list[tuple[int, int]]:
    """At most ``max_points`` of a series of steps, evenly picked, and its last."""
    if len(points) <= max_points:
        return list(points)
    step = len(points) / max_points
    return [points[int(i * step)] for i in range(max_points)] + [points[-1]]


def _participant(pid: str, names: dict, rooms: dict) -> ParticipantReport:
    kind, _, ident = pid.partition(":")
    rep = ParticipantReport(pid)
    if kind == "member":
        rep.member_id = ident
        rep.name, rep.place, rep.phone = names.get(ident, ("", "", ""))
    elif kind == "room":
        rep.place = rooms.get(ident, ident)
        rep.name = rep.place
    return rep


# -- exports ---------------------------------------------------------------------------------
