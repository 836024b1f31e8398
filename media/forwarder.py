"""Per-packet fan-out of one track (audio or video) of a session to its viewers.

The publisher's packets are mapped once into a continuous *relay* sequence/timestamp space
(so a publisher that reconnects with new SSRCs continues the same stream), then written to
every viewer with its own SSRC, payload type, sequence offset and header-extension block.
No decoding, no per-packet logging, one header pack per viewer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from media import native
from media.cache import PacketCache
from media.keyframes import KeyframeRequester
from media.rtp import HEADER, build_extensions

PackFn = Callable[..., bytes]

# What one viewer's NACKs can make the relay resend: a NACK names up to thousands of packets
# in one datagram, and each answered is a full packet out. At most this many per NACK, and
# per downtrack a budget of RESEND_BURST refilled at RESENDS_PER_S (a viewer losing a tenth
# of a 2.5 Mbit/s video asks ~25 a second). What is over it is neither sent nor asked
# upstream; the viewer asks again, or for a keyframe.
MAX_RESENDS_PER_NACK = 64
RESEND_BURST = 256
RESENDS_PER_S = 200.0


class SourceMapper:
    """Maps (ssrc, seq, ts) of successive publisher sources into one continuous space."""

    __slots__ = ("clock_rate", "ssrc", "seq_off", "ts_off", "last_rseq", "last_rts", "last_at")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.seq_off = 0
        self.ts_off = 0
        self.last_rseq: int | None = None
        self.last_rts = 0
        self.last_at = 0.0

    def new_generation(self) -> None:
        """The publisher changed: remap at its next packet even if its SSRC is unchanged."""
        self.ssrc = None

    def rebase(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        self.ssrc = ssrc
        if self.last_rseq is None:
            self.seq_off = 0
            self.ts_off = 0
            return
        gap = max(now - self.last_at, 0.0)
        # Continue right after the last packet; timestamps advance by the wall time between.
        self.seq_off = (self.last_rseq + 1 - seq) & 0xFFFF
        self.ts_off = (self.last_rts + max(int(gap * self.clock_rate), 1) - ts) & 0xFFFFFFFF


class Downtrack:
    """One viewer's copy of one track: the rewrite parameters and the bound send path."""

    __slots__ = (
        "ssrc",
        "pt",
        "b0",
        "ext",
        "seq_off",
        "next_seq",
        "protect",
        "sendto",
        "addr",
        "native",
        "_packets",
        "_octets",
        "_errors",
        "paused",
        "rr",
        "sr_lsr",
        "sr_at",
        "rtt",
        "on_keyframe_request",
        "ts_off",
        "resume_ts",
        "resume_at",
        "since_seq",
        "nacked",
        "resend_budget",
        "resend_at",
        "resends_refused",
    )

    def __init__(self, ssrc: int, pt: int, extensions: list[tuple[int, bytes]] | None = None):
        self.ssrc = ssrc
        self.pt = pt
        self.ext = build_extensions(extensions) if extensions else b""
        self.b0 = 0x90 if self.ext else 0x80
        self.seq_off = 0
        self.next_seq = ssrc & 0x7FFF  # any start; the lower half avoids early wrap
        self.protect: Callable[[bytes], bytes] | None = None
        self.sendto: Callable[[bytes, tuple], None] | None = None
        self.addr: tuple | None = None
        # the native loop's copy of this downtrack (media/native.py), when it sends it
        self.native = None
        self._packets = 0
        self._octets = 0
        self._errors = 0
        self.paused = False
        # Latest receiver report: (highest seq, fraction lost /256, cumulative lost, jitter, at)
        self.rr: tuple[int, int, int, int, float] | None = None
        # Our last sender report (its middle 32 NTP bits, when sent) and the round trip the
        # viewer's next receiver report revealed (RFC 3550 6.4.1), in seconds.
        self.sr_lsr = 0
        self.sr_at = 0.0
        self.rtt: float | None = None
        # Timestamp offset, so that a viewer moved between forwarders (quality layers) sees
        # its timestamps continue: where it stopped, advanced by the time it was away.
        self.ts_off = 0
        self.resume_ts: int | None = None
        self.resume_at = 0.0
        # The first sequence number sent since the last (re)admission: NACKs for older ones
        # were sent under another mapping (before a pause or a layer switch) and are not ours.
        self.since_seq = self.next_seq
        # Sequence numbers this viewer asked again for (a loss signal that retransmission
        # does not hide, unlike its receiver reports' fraction lost).
        self.nacked = 0
        # Retransmissions it may still ask for (see RESEND_BURST), as of ``resend_at``.
        self.resend_budget = float(RESEND_BURST)
        self.resend_at = 0.0
        self.resends_refused = 0

    def bind(
        self,
        protect: Callable[[bytes], bytes],
        sendto: Callable,
        addr: tuple,
        srtp: object | None = None,
        fd: int = -1,
    ) -> None:
        """Send through ``protect`` and ``sendto`` to ``addr``; with the native loop's SRTP
        context ``srtp`` (the one ``protect`` is) and the socket ``fd``, the fan-out sends
        it natively. Bound again when ICE moves to another pair."""
        self.protect = protect
        self.sendto = sendto
        self.addr = addr
        if srtp is None or fd < 0 or not native.enabled():
            self.native = None
        elif self.native is None:
            t = native.track(srtp, fd, addr)
            t.b0, t.pt, t.ssrc, t.ext = self.b0, self.pt, self.ssrc, self.ext
            t.seq_off, t.ts_off = self.seq_off, self.ts_off
            self.native = t
        else:
            self.native.retarget(fd, addr[0], addr[1])

    # what was sent, by either loop
    @property
    def packets(self) -> int:
        return self._packets + (self.native.packets if self.native is not None else 0)

    @property
    def octets(self) -> int:
        return self._octets + (self.native.octets if self.native is not None else 0)

    @property
    def errors(self) -> int:
        return self._errors + (self.native.errors if self.native is not None else 0)

    def build(self, rseq: int, marker: int, rts: int, payload: bytes) -> bytes:
        b1 = (0x80 if marker else 0) | self.pt
        ts = (rts + self.ts_off) & 0xFFFFFFFF
        hdr = HEADER.pack(self.b0, b1, (rseq + self.seq_off) & 0xFFFF, ts, self.ssrc)
        return hdr + self.ext + payload


class Forwarder:
    """Fans one publisher track out to many downtracks."""

    def __init__(
        self,
        kind: str,
        clock_rate: int,
        is_keyframe: Callable[[bytes], bool] | None = None,
        keyframes: KeyframeRequester | None = None,
        cache_size: int = 1024,
    ) -> None:
        self.kind = kind
        self.mapper = SourceMapper(clock_rate)
        self.is_keyframe = is_keyframe
        self.keyframes = keyframes or KeyframeRequester(lambda: None)
        self.cache = PacketCache(cache_size)
        self._active: list[Downtrack] = []
        # the active ones split by the loop that sends them (regroup() after any change)
        self._native: list = []  # their native copies
        self._python: list[Downtrack] = []
        self._waiting: list[Downtrack] = []
        self._all: set[Downtrack] = set()
        # Sender-report anchor in relay timestamp space: (rts, monotonic time it was true)
        self._sr_anchor: tuple[int, float] | None = None
        # The publisher's own clock: (rts, its NTP time in seconds) from its last SR
        self.sr_ntp: tuple[int, float] | None = None
        # Per-packet listeners beside the viewers (the recorder): (rseq, rts, marker, payload)
        self.taps: list[Callable[[int, int, int, bytes], None]] = []
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.send_errors = 0
        self.retransmits = 0
        self.keyframes_seen = 0
        # Fed over a pipe: NACKs the cache can't answer go upstream (seqs in the source's space).
        self.on_cache_miss: Callable[[list[int]], None] | None = None

    # -- membership ----------------------------------------------------------------------
    def add(self, dt: Downtrack) -> None:
        """Start sending to a bound downtrack: audio at once, video from the next keyframe."""
        self._all.add(dt)
        self._admit_later(dt)

    def remove(self, dt: Downtrack) -> None:
        self._all.discard(dt)
        if dt in self._active:
            self._active.remove(dt)
            self.regroup()
        if dt in self._waiting:
            self._waiting.remove(dt)

    def pause(self, dt: Downtrack) -> None:
        if dt in self._active:
            self._active.remove(dt)
            self.regroup()
            m = self.mapper
            dt.next_seq = (m.last_rseq or 0) + dt.seq_off + 1
            dt.resume_ts = (m.last_rts + dt.ts_off) & 0xFFFFFFFF
            dt.resume_at = m.last_at
        if dt in self._waiting:
            self._waiting.remove(dt)
        dt.paused = True

    def resume(self, dt: Downtrack) -> None:
        if dt.paused and dt in self._all:
            dt.paused = False
            self._admit_later(dt)

    def hand_over(self, dt: Downtrack, other: Forwarder) -> None:
        """Move a viewer's downtrack to another forwarder (a quality layer of the same codec);
        it starts there at the next keyframe, its numbering continuing."""
        self.pause(dt)
        self.remove(dt)
        dt.paused = False
        other.add(dt)

    def _admit_later(self, dt: Downtrack) -> None:
        if dt not in self._waiting and dt not in self._active:
            self._waiting.append(dt)
            if self.is_keyframe is not None:
                self.keyframes.request()

    def regroup(self) -> None:
        """Split the active downtracks by the loop that sends them (a bind can change it)."""
        self._native = [dt.native for dt in self._active if dt.native is not None]
        self._python = [dt for dt in self._active if dt.native is None]

    @property
    def viewers(self) -> int:
        return len(self._all)

    # -- the hot path --------------------------------------------------------------------
    def push(self, ssrc: int, seq: int, ts: int, marker: int, payload: bytes) -> None:
        """Forward one publisher packet (already unwrapped from RTX) to every viewer."""
        m = self.mapper
        now = time.monotonic()
        if ssrc != m.ssrc:
            m.rebase(ssrc, seq, ts, now)
        rseq = (seq + m.seq_off) & 0xFFFF
        rts = (ts + m.ts_off) & 0xFFFFFFFF
        last = m.last_rseq
        if last is None or ((rseq - last) & 0xFFFF) < 0x8000:
            m.last_rseq = rseq
            m.last_rts = rts
            m.last_at = now
        plen = len(payload)
        self.packets_in += 1
        self.bytes_in += plen
        self.cache.put(rseq, marker, rts, payload)
        if self.taps:
            for tap in self.taps:
                tap(rseq, rts, marker, payload)

        if self._waiting:
            self._admit(rseq, rts, now, payload)

        active = self._active
        if not active:
            return
        if self._native:  # every viewer on a plain UDP socket: one call for all of them
            sent = native.fanout(self._native, marker, rseq, rts, payload)
            self.send_errors += len(self._native) - sent
        b1 = 0x80 if marker else 0
        pack = HEADER.pack
        for dt in self._python:
            try:
                dt.sendto(
                    dt.protect(
                        pack(
                            dt.b0,
                            b1 | dt.pt,
                            (rseq + dt.seq_off) & 0xFFFF,
                            (rts + dt.ts_off) & 0xFFFFFFFF,
                            dt.ssrc,
                        )
                        + dt.ext
                        + payload
                    ),
                    dt.addr,
                )
                dt._packets += 1
                dt._octets += plen
            except Exception:  # noqa: BLE001 - one viewer's failure never stops the others
                dt._errors += 1
                self.send_errors += 1
        n = len(active)
        self.packets_out += n
        self.bytes_out += n * plen

    def _admit(self, rseq: int, rts: int, now: float, payload: bytes) -> None:
        if self.is_keyframe is not None:
            if not self.is_keyframe(payload):
                return
            self.keyframes_seen += 1
            self.keyframes.on_keyframe()
        rate = self.mapper.clock_rate
        for dt in self._waiting:
            # The first packet this viewer gets follows its last one without a gap.
            dt.seq_off = (dt.next_seq - rseq) & 0xFFFF
            dt.since_seq = dt.next_seq & 0xFFFF
            if dt.resume_ts is not None:
                away = max(int((now - dt.resume_at) * rate), 1)
                dt.ts_off = (dt.resume_ts + away - rts) & 0xFFFFFFFF
                dt.resume_ts = None
            if dt.native is not None:
                dt.native.seq_off, dt.native.ts_off = dt.seq_off, dt.ts_off
            self._active.append(dt)
        self._waiting.clear()
        self.regroup()

    # -- feedback from viewers -------------------------------------------------------------
    def retransmit(self, dt: Downtrack, out_seqs: list[int]) -> int:
        """Answer a viewer's NACK from the cache; returns how many packets were resent."""
        if dt.sendto is None or dt not in self._all:
            return 0  # a paused viewer still gets what it lost before the pause
        now = time.monotonic()
        budget = min(dt.resend_budget + (now - dt.resend_at) * RESENDS_PER_S, RESEND_BURST)
        dt.resend_at = now
        allowed = min(int(budget), MAX_RESENDS_PER_NACK)
        sent = 0
        answered = 0
        missing: list[int] = []
        since = dt.since_seq
        for out_seq in dict.fromkeys(out_seqs):  # a NACK may name a packet many times
            if (out_seq - since) & 0xFFFF >= 0x8000:
                continue  # sent before this mapping began: neither ours nor a loss now
            dt.nacked += 1
            if answered >= allowed:
                dt.resends_refused += 1
                continue
            answered += 1
            entry = self.cache.get((out_seq - dt.seq_off) & 0xFFFF)
            if entry is None:
                missing.append((out_seq - dt.seq_off - self.mapper.seq_off) & 0xFFFF)
                continue
            rseq, marker, rts, payload = entry
            try:
                dt.sendto(dt.protect(dt.build(rseq, marker, rts, payload)), dt.addr)
                sent += 1
            except Exception:  # noqa: BLE001
                dt._errors += 1
                self.send_errors += 1
        dt.resend_budget = budget - answered
        self.retransmits += sent
        if missing and self.on_cache_miss is not None:
            self.on_cache_miss(missing)
        return sent

    def note_sender_report(self, rtp_ts: int, ntp: int = 0) -> None:
        """The publisher's SR says rtp_ts is 'now' (its NTP time ``ntp``): keep it as the clock
        anchor for our SRs, and for placing audio and video on one clock when recording."""
        rts = (rtp_ts + self.mapper.ts_off) & 0xFFFFFFFF
        self._sr_anchor = (rts, time.monotonic())
        if ntp:
            self.sr_ntp = (rts, ntp / (1 << 32))

    def rtp_timestamp_now(self) -> int:
        """The relay timestamp that corresponds to this moment, for sender reports."""
        now = time.monotonic()
        anchor = self._sr_anchor
        m = self.mapper
        if anchor is None or anchor[1] < m.last_at - 5.0:
            anchor = (m.last_rts, m.last_at)
        return (anchor[0] + int((now - anchor[1]) * m.clock_rate)) & 0xFFFFFFFF

    def new_publisher(self) -> None:
        self.mapper.new_generation()
        self._sr_anchor = None
        self.sr_ntp = None
        # Viewers keep their connection; video resumes from the new publisher's first keyframe.
        if self.is_keyframe is not None:
            for dt in self._active:
                dt.next_seq = ((self.mapper.last_rseq or 0) + dt.seq_off + 1) & 0xFFFF
            self._waiting.extend(self._active)
            self._active.clear()
            self.regroup()
