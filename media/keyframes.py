"""Keyframe requests from many viewers, merged into few requests to the publisher."""

from __future__ import annotations

import time
from collections.abc import Callable


class KeyframeRequester:
    """At most one request upstream per ``min_interval``; a request that arrives inside the
    interval is remembered and sent when it ends, unless a keyframe came meanwhile."""

    def __init__(
        self,
        send: Callable[[], None],
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._min_interval = min_interval
        self._clock = clock
        self._last_sent = -1e9
        self.pending = False
        self.sent = 0
        self.merged = 0

    def set_sender(self, send: Callable[[], None]) -> None:
        self._send = send

    def request(self) -> bool:
        """Ask for a keyframe; True when a request went upstream now."""
        now = self._clock()
        if now - self._last_sent >= self._min_interval:
            return self._fire(now)
        self.merged += 1
        self.pending = True
        return False

    def on_keyframe(self) -> None:
        self.pending = False

    def tick(self) -> bool:
        """Send a remembered request once the interval has passed."""
        if self.pending and self._clock() - self._last_sent >= self._min_interval:
            return self._fire(self._clock())
        return False

    def _fire(self, now: float) -> bool:
        self._last_sent = now
        self.pending = False
        self.sent += 1
        try:
            self._send()
        except Exception:  # noqa: BLE001 - the publisher may be gone; the next request retries
            self.pending = True
        return True
