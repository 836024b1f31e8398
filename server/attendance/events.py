"""Ledger event types, one frozen dataclass each, and their canonical form (defined once).

The canonical form is UTF-8 JSON with sorted keys and no spaces over
``{"at_ms", "data", "kind", "seq", "session"}``; the chain hash of an event is
``sha256(previous hash bytes + canonical bytes)``, the first event's previous hash being 32
zero bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

GENESIS = "0" * 64

LEAVE_REASONS = (
    "delete",
    "ice_failure",
    "heartbeat_timeout",
    "server_restart",
    "session_end",
    "replaced",
    "worker_lost",  # the media worker process serving it died
    "node_lost",  # cluster mode: the node serving it left the registry
)


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""

    def data(self) -> dict:
        # Flat fields only, so no deep copy is needed (dataclasses.asdict makes one).
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        return {name: getattr(self, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Start(Event):
    """The lecture went live (its publisher's media first flowed)."""

    kind: ClassVar[str] = "start"
    publisher: str


@dataclass(frozen=True)
class End(Event):
    kind: ClassVar[str] = "end"
    by: str


@dataclass(frozen=True)
class Join(Event):
    """Media started flowing to a participant's connection (``peer``)."""

    kind: ClassVar[str] = "join"
    participant: str  # "member:<id>", "room:<code>", "viewer:<peer>", "lecturer"
    peer: str
    identified_by: str  # "token" (personal link) or "open" (id entered on an open link)
    address: str
    audio_only: bool


@dataclass(frozen=True)
class Heartbeat(Event):
    """Both kinds of evidence for the time since the peer's previous heartbeat.

    Page side: what the page says (frames decoded, audio playing, visible). Relay side: the
    highest sequence numbers the viewer's receiver reports acknowledged, per track
    (``-1``: no report yet) — the relay's own proof that media reached the viewer.
    ``played_ms``: how much of the time since its previous heartbeat the page says it played
    (``-1``: it did not say, as pages before it and other clients do); it can only lower
    what the span earns, never raise it.
    """

    kind: ClassVar[str] = "heartbeat"
    peer: str
    frames_decoded: int
    audio_playing: bool
    visible: bool
    video_rr: int
    audio_rr: int
    played_ms: int = -1


@dataclass(frozen=True)
class Seen(Event):
    """The relay's evidence alone, for a connection whose page sends no heartbeat of ours (a
    standard WHEP player): the highest sequence numbers its receiver reports acknowledged,
    as in a heartbeat. No page says the media was watched, so reports show this time apart
    ("no page evidence") and it earns no credit."""

    kind: ClassVar[str] = "seen"
    peer: str
    video_rr: int
    audio_rr: int


@dataclass(frozen=True)
class Leave(Event):
    kind: ClassVar[str] = "leave"
    peer: str
    reason: str


@dataclass(frozen=True)
class Headcount(Event):
    kind: ClassVar[str] = "headcount"
    room: str
    count: int


@dataclass(frozen=True)
class Checkin(Event):
    kind: ClassVar[str] = "checkin"
    room: str
    member: str


@dataclass(frozen=True)
class Export(Event):
    """Someone read personal data out of the ledger."""

    kind: ClassVar[str] = "export"
    by: str
    format: str
    phones: bool


@dataclass(frozen=True)
class Replay(Event):
    """Replay progress from a page: where the playhead is in the recording, and whether it
    plays. ``view`` tells apart two pages of one member."""

    kind: ClassVar[str] = "replay"
    participant: str
    view: str
    position_ms: int
    playing: bool
    visible: bool


@dataclass(frozen=True)
class Question(Event):
    """A question asked in the session's Q&A."""

    kind: ClassVar[str] = "question"
    question: int
    participant: str
    text: str


@dataclass(frozen=True)
class Moderation(Event):
    """The lecturer hid, showed, pinned, unpinned or answered a question."""

    kind: ClassVar[str] = "moderation"
    question: int
    action: str
    by: str
    text: str


@dataclass(frozen=True)
class Policy(Event):
    """What earns credit in this session, as an admin set it (at its creation when not the
    default, or changed later, even after the lecture): the share of the lecture to watch, in
    percent, and whether replay time counts. Reports apply the last one; the ledger keeps
    every change, and who made it."""

    kind: ClassVar[str] = "policy"
    by: str
    threshold_percent: int
    replay_credit: bool
    # roll calls (点名) a member must answer, of those held (older events have neither: 0)
    rollcalls_required: int = 0
    # whether, when roll calls are required, a member who missed them earns by replay
    replay_without_rollcalls: bool = False


@dataclass(frozen=True)
class RollCall(Event):
    """点名: everyone watching is asked to answer within ``window_s`` (the lecturer's or the
    lecture's schedule's; ``by`` says whose)."""

    kind: ClassVar[str] = "roll_call"
    call: str
    by: str
    window_s: int


@dataclass(frozen=True)
class RollAnswer(Event):
    """An answer to a roll call from ``participant`` on its connection ``peer``; a room's
    carries its headcount then (``count``; -1 for a member). Whether it counts is the
    report's to say: in time, and the connection receiving media at that moment."""

    kind: ClassVar[str] = "roll_answer"
    call: str
    participant: str
    peer: str
    count: int = -1


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        Start,
        End,
        Join,
        Heartbeat,
        Seen,
        Leave,
        Headcount,
        Checkin,
        Export,
        Replay,
        Question,
        Moderation,
        Policy,
        RollCall,
        RollAnswer,
    )
}


def event_from(kind: str, data: dict) -> Event:
    """Rebuild an event from its kind and data (as the Redis stream carries them)."""
    return EVENT_TYPES[kind](**data)


# json.dumps with these options builds a new encoder per call; the writer thread encodes
# every event, so one encoder is kept (its output is the same).
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# what is written: the same output, but NaN and infinities (not JSON) are refused
_encode_strict = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def data_json(data: dict) -> str:
    """The canonical JSON of an event's data (sorted keys, no spaces, UTF-8 as is).
    ValueError for NaN or an infinity."""
    return _encode_strict(data)


_raw_decode = json.JSONDecoder().raw_decode


def data_from_json(text: str) -> dict:
    """An event's data back from the ledger's JSON (canonical: no white space around it to
    skip, which is most of what ``json.loads`` adds to the decoder's own scan)."""
    return _raw_decode(text)[0]


def canonical(
    session: str, seq: int, at_ms: int, kind: str, data: dict, encoded: str | None = None
) -> bytes:
    """The canonical bytes of an event; ``encoded`` is ``data_json(data)`` if already made.

    Equal to ``json.dumps`` of the whole object with sorted keys: the keys below are in order.
    """
    return (
        f'{{"at_ms":{at_ms},"data":{encoded if encoded is not None else _encode(data)},'
        f'"kind":{_encode(kind)},"seq":{seq},"session":{_encode(session)}}}'
    ).encode()


def chain_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_bytes).hexdigest()
