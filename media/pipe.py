"""Plain RTP between relay processes: the worker (or node) holding the lecture feeds the others.

An origin keeps one UDP socket per session (``PipeOut``); each fed process is one destination
with an audio and a video downtrack on the origin's forwarders, so the pipe is just two more
viewers (no SRTP: it stays on loopback or the data centre's own network). The fed side
(``PipeIn``) accepts datagrams only from the origin's address, pushes RTP into its own
forwarders and keeps their sender-report clock; its keyframe requests and NACKs go back up the
pipe as RTCP. Publisher take-over is the origin's business: the pipe stream stays continuous.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from aiortc.clock import current_ntp_time

from media.forwarder import Downtrack, Forwarder
from media.rtcp import sender_report
from media.rtp import RtpHeaderError, parse_header

log = logging.getLogger(__name__)

AUDIO_SSRC = 0x0A0D1000
VIDEO_SSRC = 0x0B1D2000
AUDIO_PT = 111
VIDEO_PT = 96
RECV_BUFFER = 4 * 1024 * 1024
_PSFB_PLI = struct.Struct("!BBHII")  # V=2 FMT=1, PT=206, length 2, sender ssrc, media ssrc
_NACK_HEAD = struct.Struct("!BBHII")  # V=2 FMT=1, PT=205
_SR_HEAD = struct.Struct("!BBHIQI")


def _plain(data: bytes) -> bytes:
    return data


def pli(media_ssrc: int) -> bytes:
    return _PSFB_PLI.pack(0x81, 206, 2, 1, media_ssrc)


def nack(media_ssrc: int, seqs: list[int]) -> bytes:
    """A generic NACK (RFC 4585) for ``seqs``, one FCI (pid + bitmask) per run of 17."""
    fci = b""
    seqs = sorted(set(s & 0xFFFF for s in seqs))
    while seqs:
        pid = seqs.pop(0)
        mask = 0
        while seqs and 0 < ((seqs[0] - pid) & 0xFFFF) <= 16:
            mask |= 1 << (((seqs.pop(0) - pid) & 0xFFFF) - 1)
        fci += struct.pack("!HH", pid, mask)
    return _NACK_HEAD.pack(0x81, 205, 2 + len(fci) // 4, 1, media_ssrc) + fci


def parse_nack(data: bytes) -> list[int]:
    lost = []
    for off in range(12, len(data) - 3, 4):
        pid, mask = struct.unpack_from("!HH", data, off)
        lost.append(pid)
        lost.extend((pid + i + 1) & 0xFFFF for i in range(16) if mask >> i & 1)
    return lost


def _is_rtcp(data: bytes) -> bool:
    return len(data) >= 8 and 200 <= data[1] <= 206


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: the peer went away
        pass


class _Destination:
    __slots__ = ("addr", "audio", "video")

    def __init__(self, addr: tuple) -> None:
        self.addr = addr
        self.audio = Downtrack(AUDIO_SSRC, AUDIO_PT)
        self.video = Downtrack(VIDEO_SSRC, VIDEO_PT)


class PipeOut:
    """The origin side: sends one session's forwarders to other processes."""

    def __init__(self, audio: Forwarder, video: Forwarder) -> None:
        self.audio = audio
        self.video = video
        self.transport: asyncio.DatagramTransport | None = None
        self.destinations: dict[tuple, _Destination] = {}
        self.refused = 0

    async def open(self, host: str = "127.0.0.1") -> tuple[str, int]:
        """Bind the session's pipe socket; returns the address fed processes must expect."""
        if self.transport is None:
            loop = asyncio.get_running_loop()
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._received), local_addr=(host, 0)
            )
        return self.transport.get_extra_info("sockname")[:2]

    def add(self, addr: tuple[str, int]) -> None:
        addr = (addr[0], int(addr[1]))
        if addr in self.destinations or self.transport is None:
            return
        dest = _Destination(addr)
        for fwd, dt in ((self.audio, dest.audio), (self.video, dest.video)):
            dt.bind(_plain, self.transport.sendto, addr)
            fwd.add(dt)
        self.destinations[addr] = dest

    def remove(self, addr: tuple[str, int]) -> None:
        dest = self.destinations.pop((addr[0], int(addr[1])), None)
        if dest is not None:
            self.audio.remove(dest.audio)
            self.video.remove(dest.video)

    def send_reports(self) -> None:
        """Once a second: each pipe track's SR carries the relay clock to the fed process."""
        if self.transport is None:
            return
        ntp = current_ntp_time()
        for dest in self.destinations.values():
            for fwd, dt in ((self.audio, dest.audio), (self.video, dest.video)):
                if dt.packets:
                    report = sender_report(
                        dt.ssrc, ntp, fwd.rtp_timestamp_now(), dt.packets, dt.octets
                    )
                    self.transport.sendto(report, dest.addr)

    def _received(self, data: bytes, addr: tuple) -> None:
        dest = self.destinations.get(addr[:2])
        if dest is None or not _is_rtcp(data) or len(data) < 12:  # PLI, NACK: 12 and more
            self.refused += 1
            return
        if data[1] == 206 and data[0] & 0x1F == 1:
            self.video.keyframes.request()
        elif data[1] == 205 and data[0] & 0x1F == 1:
            if _ssrc_of(data) == VIDEO_SSRC:
                self.video.retransmit(dest.video, parse_nack(data))
            else:
                self.audio.retransmit(dest.audio, parse_nack(data))

    def close(self) -> None:
        for addr in list(self.destinations):
            self.remove(addr)
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _ssrc_of(feedback: bytes) -> int:
    return struct.unpack_from("!I", feedback, 8)[0]


class PipeIn:
    """The fed side: one session's RTP from its origin into this process's forwarders."""

    def __init__(
        self, audio: Forwarder, video: Forwarder, source: tuple[str, int] | None = None
    ) -> None:
        self.forwarders = {AUDIO_SSRC: audio, VIDEO_SSRC: video}
        self.video = video
        # Until the origin's address is known, nothing is accepted.
        self.source = (source[0], int(source[1])) if source else None
        self.transport: asyncio.DatagramTransport | None = None
        self.refused = 0
        self.packets = 0
        self.last_at = 0.0

    async def open(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._received), local_addr=(host, 0)
        )
        sock = self.transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        except OSError:
            pass
        self.video.keyframes.set_sender(self.request_keyframe)
        for fwd in self.forwarders.values():
            kind = fwd.kind
            fwd.on_cache_miss = lambda seqs, kind=kind: self.request_retransmit(kind, seqs)
        return self.transport.get_extra_info("sockname")[1]

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1] if self.transport else 0

    def request_keyframe(self) -> None:
        if self.transport is not None and self.source is not None:
            self.transport.sendto(pli(VIDEO_SSRC), self.source)

    def request_retransmit(self, kind: str, seqs: list[int]) -> None:
        if self.transport is not None and self.source is not None and seqs:
            ssrc = VIDEO_SSRC if kind == "video" else AUDIO_SSRC
            self.transport.sendto(nack(ssrc, seqs), self.source)

    def _received(self, data: bytes, addr: tuple) -> None:
        if addr[:2] != self.source:
            self.refused += 1
            return
        if _is_rtcp(data):
            if data[1] == 200 and len(data) >= _SR_HEAD.size + 8:
                _, _, _, ssrc, ntp, rtp_ts = _SR_HEAD.unpack_from(data)
                fwd = self.forwarders.get(ssrc)
                if fwd is not None:
                    fwd.note_sender_report(rtp_ts, ntp)
            return
        try:
            marker, _, seq, ts, ssrc, start, end = parse_header(data)
        except RtpHeaderError:
            self.refused += 1
            return
        fwd = self.forwarders.get(ssrc)
        if fwd is None:
            self.refused += 1
            return
        self.packets += 1
        fwd.push(ssrc, seq, ts, marker, data[start:end])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
