"""Who may speak back: raised hands in order, and the few who have the floor (per session).

Kept in memory: a restart ends every turn (the speakers' connections end with it) and rooms
raise their hands again. ``who`` is a participant id, ``room:<code>`` or ``member:<id>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from server.refusals import Conflict, NotFound


@dataclass
class Hand:
    who: str
    name: str
    raised_at: float


@dataclass
class Floor:
    max_speakers: int = 1
    members_may_raise: bool = False
    hands: list[Hand] = field(default_factory=list)
    speakers: dict[str, Hand] = field(default_factory=dict)  # who -> granted hand

    def as_json(self, live: set[str]) -> dict:
        return {
            "max_speakers": self.max_speakers,
            "members_may_raise": self.members_may_raise,
            "hands": [{"who": h.who, "name": h.name, "raised_at": h.raised_at} for h in self.hands],
            "speakers": [
                {"who": h.who, "name": h.name, "live": h.who in live}
                for h in self.speakers.values()
            ],
        }


class FloorBoard:
    def __init__(self) -> None:
        self._floors: dict[str, Floor] = {}

    def of(self, session: str) -> Floor:
        return self._floors.setdefault(session, Floor())

    def raise_hand(self, session: str, who: str, name: str) -> int:
        """Returns the hand's place in the queue (1 = next)."""
        floor = self.of(session)
        if who in floor.speakers:
            raise Conflict("you have the floor already")
        for i, hand in enumerate(floor.hands):
            if hand.who == who:
                return i + 1
        floor.hands.append(Hand(who, name, time.time()))
        return len(floor.hands)

    def lower_hand(self, session: str, who: str) -> bool:
        floor = self.of(session)
        before = len(floor.hands)
        floor.hands = [h for h in floor.hands if h.who != who]
        return len(floor.hands) < before

    def grant(self, session: str, who: str) -> Hand:
        floor = self.of(session)
        if who in floor.speakers:
            return floor.speakers[who]
        hand = next((h for h in floor.hands if h.who == who), None)
        if hand is None:
            raise NotFound(f"{who} has not raised a hand")
        if len(floor.speakers) >= floor.max_speakers:
            raise Conflict(f"{floor.max_speakers} speaker(s) at a time: end a turn first")
        floor.hands.remove(hand)
        floor.speakers[who] = hand
        return hand

    def end_turn(self, session: str, who: str) -> bool:
        return self.of(session).speakers.pop(who, None) is not None

    def may_speak(self, session: str, who: str) -> bool:
        return who in self.of(session).speakers

    def forget(self, session: str) -> None:
        self._floors.pop(session, None)
