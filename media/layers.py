"""Which quality a viewer gets: the full lecture, the lecturer's low copy, or sound only.

aiortc cannot receive a browser's simulcast (one RTP stream per RID in one m-line), so the
lecturer page publishes a second, low-bitrate publication of the same camera (``feed=low``)
and each viewer's video downtrack is moved between the two forwarders, on a keyframe, with
its sequence numbers and timestamps continuing. The signal is the viewer's own receiver
reports (fraction lost, RFC 3550) and its NACKs (packets asked again per packet sent: the
fraction lost of a report hides losses that a retransmission repaired, the NACKs do not):
down quickly when loss stays high, up slowly once it has stayed low. Sound only is the last
step, and a viewer who chose it keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGH, LOW, AUDIO = "high", "low", "audio"


@dataclass(frozen=True)
class LayerPolicy:
    down_loss: float = 0.10  # a report above this counts against the current layer
    up_loss: float = 0.02  # below this counts towards the next layer up
    down_after: int = 2  # consecutive bad reports before stepping down
    up_after_s: float = 8.0  # this long with only good reports before stepping up


class LayerChooser:
    """One viewer's layer, from the receiver reports it sends (one decision per report)."""

    def __init__(self, policy: LayerPolicy) -> None:
        self.policy = policy
        self.layer = HIGH
        self._bad = 0
        self._good_since: float | None = None
        self.switches = 0

    def observe(self, loss: float, now: float, low_available: bool) -> str | None:
        """Feed one interval's loss (once a second); returns the new layer when it changes."""
        p = self.policy
        if loss > p.down_loss:
            self._good_since = None
            self._bad += 1
            if self._bad >= p.down_after and self.layer != AUDIO:
                self._bad = 0
                return self._go(LOW if self.layer == HIGH and low_available else AUDIO)
            return None
        self._bad = 0
        if loss > p.up_loss:
            self._good_since = None
            return None
        if self._good_since is None:
            self._good_since = now
        if self.layer != HIGH and now - self._good_since >= p.up_after_s:
            self._good_since = now
            return self._go(LOW if self.layer == AUDIO and low_available else HIGH)
        return None

    def fallback(self, low_available: bool) -> str | None:
        """The low copy went away while this viewer was on it."""
        if self.layer == LOW and not low_available:
            return self._go(HIGH)
        return None

    def _go(self, layer: str) -> str:
        self.layer = layer
        self.switches += 1
        return layer
