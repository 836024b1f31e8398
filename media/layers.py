"""Which quality a viewer gets: the full lecture, the lecturer's low copy, or sound only.

aiortc cannot receive a browser's simulcast (one RTP stream per RID in one m-line), so the
lecturer page publishes a second, low-bitrate publication of the same camera (``feed=low``)
and each viewer's video downtrack is moved between the two forwarders, on a keyframe, with
its sequence numbers and timestamps continuing. The signal (:class:`LossWindow`) is what the
viewer failed to get, read from its receiver reports' cumulative lost and highest sequence
number (RFC 3550 6.4.1) over at least ``LayerPolicy.window_packets`` packets: one report's
fraction lost covers whatever arrived since the one before (a browser sends one with each
NACK, a few packets after the loss), and a packet our retransmission repaired leaves the
cumulative count again. Beside it, the share of packets the viewer asked for again: a link
that needs a large part of the lecture resent is too weak even while the repair keeps up.
Down quickly when loss stays high, up slowly once it has stayed low. Sound only is the last
step, and a viewer who chose it keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGH, LOW, AUDIO = "high", "low", "audio"


@dataclass(frozen=True)
class LayerPolicy:
    """The thresholds; each reading is one :class:`LossWindow` of ``window_packets`` or more."""

    down_loss: float = 0.05
    """Packets the viewer never got, above which a reading counts against the layer: a video
    frame is several packets, so 5% unrepaired loss breaks a large share of frames (each
    freezes the picture until the next keyframe); 2% that NACK repairs reads as ~0."""
    up_loss: float = 0.02
    """At or below this (and ``up_resent``) a reading counts towards the next layer up."""
    down_resent: float = 0.25
    """Share of sent packets the viewer NACKed, above which a reading counts against the layer
    even when every one was repaired: each repair costs a round trip of delay and the resend
    adds to the bitrate, so a link that drops a quarter of the lecture falls behind."""
    up_resent: float = 0.10
    """At or below this a reading may count towards the next layer up (a phone whose 2% loss
    NACK repairs still goes back to the full lecture)."""
    window_packets: int = 30
    """A reading covers at least this many packets (the reports' expected count), so that one
    lost packet alone never reads above ``down_loss``: one lost in a report of 8 would read as
    12%, one in 30 reads as 3%. A phone's full lecture (~100 video packets a second) fills it
    with each report, the low copy (~25 a second) in one or two, sound (50) with each, so real
    loss still moves a viewer down within ~5 s (``down_after`` readings)."""
    down_after: int = 2
    """Consecutive bad readings before stepping down (one burst is not a weak link)."""
    up_after_s: float = 8.0
    """This long with only good readings before stepping up (slow, not to flap), counted from
    the start of the first good reading's window."""


@dataclass(frozen=True)
class LossReading:
    """One window of a viewer's track: the share it never got and the share it asked again."""

    lost: float
    resent: float
    packets: int


class LossWindow:
    """Accumulates one track's receiver reports until they cover ``window_packets`` packets.

    Fed with each new report's highest sequence number (only its low 16 bits are used: aiortc
    sends no cycle count there, browsers do) and cumulative packets lost, beside the relay's
    own counts of packets sent and NACKed on that track. A report older than the one before
    (its highest sequence number behind) is ignored."""

    def __init__(self, window_packets: int) -> None:
        self.window_packets = window_packets
        self._last: tuple[int, int, int, int] | None = None  # highest, lost, sent, nacked
        self._expected = self._lost = self._sent = self._nacked = 0

    def add(self, highest: int, lost: int, sent: int, nacked: int) -> LossReading | None:
        """One new report; the reading once the window is full, else None."""
        last, self._last = self._last, (highest, lost, sent, nacked)
        if last is None:
            return None
        advanced = (highest - last[0]) & 0xFFFF
        if advanced >= 0x8000:  # reordered or stale: keep the newer baseline
            self._last = last
            return None
        self._expected += advanced
        self._lost += lost - last[1]  # falls when a repaired packet arrives late
        self._sent += sent - last[2]
        self._nacked += nacked - last[3]
        if self._expected < self.window_packets:
            return None
        reading = LossReading(
            lost=min(max(self._lost / self._expected, 0.0), 1.0),
            resent=min(self._nacked / self._sent, 1.0) if self._sent > 0 else 0.0,
            packets=self._expected,
        )
        self.restart()
        return reading

    def restart(self) -> None:
        """Forget the window so far (the layer changed), keeping the newest report as base."""
        self._expected = self._lost = self._sent = self._nacked = 0


class LayerChooser:
    """One viewer's layer, from its loss readings (one decision per reading)."""

    def __init__(self, policy: LayerPolicy) -> None:
        self.policy = policy
        self.layer = HIGH
        self._bad = 0
        self._good_since: float | None = None
        self._last_at: float | None = None  # the reading before: where this one's window began
        self.switches = 0

    def observe(
        self, loss: float, now: float, low_available: bool, resent: float = 0.0
    ) -> str | None:
        """Feed one reading's loss and resent share; returns the new layer when it changes."""
        p = self.policy
        began, self._last_at = self._last_at, now
        if loss > p.down_loss or resent > p.down_resent:
            self._good_since = None
            self._bad += 1
            if self._bad >= p.down_after and self.layer != AUDIO:
                self._bad = 0
                return self._go(LOW if self.layer == HIGH and low_available else AUDIO)
            return None
        self._bad = 0
        if loss > p.up_loss or resent > p.up_resent:
            self._good_since = None
            return None
        if self._good_since is None:
            # good since the window began: a sound-only viewer's browser reports every ~5 s
            # (Chromium's audio RTCP interval), so counting from the end added a report's worth
            self._good_since = now if began is None else began
        if self.layer != HIGH and now - self._good_since >= p.up_after_s:
            self._good_since = now
            return self._go(LOW if self.layer == AUDIO and low_available else HIGH)
        return None

    def tick(self, now: float, low_available: bool) -> str | None:
        """A second with no new reading. A sound-only viewer's browser reports every 2.5-7.5 s
        (Chromium's 5 s audio interval, randomised as RFC 3550 6.2 asks), so waiting for the
        report after ``up_after_s`` added up to one more interval: once the clean time has
        run with no bad reading in it, step up now. A link still weak shows in the video
        reports, which come each second, and steps down again within ``down_after``."""
        if self.layer != AUDIO or self._good_since is None:
            return None
        if now - self._good_since < self.policy.up_after_s:
            return None
        self._good_since = now
        return self._go(LOW if low_available else HIGH)

    def judge(self, reading: LossReading, now: float, low_available: bool) -> str | None:
        """:meth:`observe` for one :class:`LossWindow` reading."""
        return self.observe(reading.lost, now, low_available, reading.resent)

    def fallback(self, low_available: bool) -> str | None:
        """The low copy went away while this viewer was on it."""
        if self.layer == LOW and not low_available:
            return self._go(HIGH)
        return None

    def _go(self, layer: str) -> str:
        self.layer = layer
        self._last_at = None  # the windows restart with the next report, not at this moment
        self.switches += 1
        return layer
