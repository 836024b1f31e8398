"""The one module that reaches into aiortc's private attributes (aiortc is pinned).

- Ingest: the publisher's DTLS transport hands us each decrypted RTP packet before aiortc's
  receiver sees it; the receiver still runs its NACK, receiver-report and REMB logic toward
  the publisher (Chrome ramps its bitrate only with that feedback), but its decoder never
  gets a frame: we forward, we do not decode.
- Egress: a viewer's RTCRtpSender never runs its encode loop or RTCP loop; its RTCP from the
  viewer (RR, NACK, PLI/FIR) is handed to us, and packets go out by SRTP ``protect`` plus the
  nominated ICE pair's UDP ``sendto``, skipping aiortc's coroutine path. TURN/TCP pairs fall
  back to a queue drained by a task owned by :class:`SendPath`.
"""

from __future__ import annotations

import asyncio
import queue
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partialmethod

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from media import native
from media.rtp import RtpHeaderError, parse_header

_ORIGINAL_HOST_ADDRESSES = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: tuple[str, ...] | None) -> None:
    """Offer exactly these host addresses as ICE candidates (None: aioice's own choice,
    which skips loopback). Process-wide, as aioice reads it at gathering time."""
    if addresses is None:
        aioice.ice.get_host_addresses = _ORIGINAL_HOST_ADDRESSES
    else:
        chosen = list(addresses)

        def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = fixed


_ORIGINAL_COMPONENT_CANDIDATES = aioice.ice.Connection.get_component_candidates


def bound_server_candidates(seconds: float | None) -> None:
    """Wait at most ``seconds`` for the STUN and TURN servers' candidates, then go on with the
    host candidates and whatever else has come (None: aioice's own 5 s). aiortc gathers in
    setLocalDescription and does not trickle, so this wait is every answer's: a TURN server
    that does not answer held each one back 5 s. A task still waiting is cancelled, which
    closes its socket (aioice's create_turn_endpoint). Process-wide, as aioice gathers."""
    if seconds is None:
        aioice.ice.Connection.get_component_candidates = _ORIGINAL_COMPONENT_CANDIDATES
    else:
        aioice.ice.Connection.get_component_candidates = partialmethod(
            _ORIGINAL_COMPONENT_CANDIDATES, timeout=seconds
        )


def native_srtp(dtls):
    """The native loop's outbound SRTP context of a connected DTLS transport: its keying
    material exported again as aiortc's _setup_srtp does (RFC 5764 4.2), kept on the
    transport so that every send path of the connection shares it."""
    made = getattr(dtls, "_lr_native_srtp", None)
    if made is not None:
        return made
    selected = dtls._ssl.get_selected_srtp_profile()
    profile = next(p for p in dtls._srtp_profiles if p.openssl_profile == selected)
    view = dtls._ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key = profile.get_key_and_salt(view, 1 if dtls._role == "server" else 0)
    made = dtls._lr_native_srtp = native.srtp(key, profile.libsrtp_profile)
    return made


class SendPath:
    """Synchronous send of SRTP/SRTCP for one connected DTLS transport."""

    def __init__(self, dtls) -> None:
        self._dtls = dtls
        self._queue: deque[tuple[bytes, tuple]] = deque(maxlen=512)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # With the native loop, this connection's RTP is protected by its SRTP context (the
        # same key as aiortc's, derived again) on every path it has: one context a
        # connection, or the rollover counters of two would part after 65,536 packets.
        self.srtp = native_srtp(dtls) if native.enabled() else None
        self.protect: Callable[[bytes], bytes] = (
            self.srtp.protect if self.srtp is not None else dtls._tx_srtp.protect
        )
        self.protect_rtcp: Callable[[bytes], bytes] = dtls._tx_srtp.protect_rtcp
        self.fd = -1  # the plain UDP socket the native loop sends on, when there is one
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("no nominated ICE pair")
        self.addr: tuple = pair.remote_addr
        self._pair = pair
        proto = pair.protocol
        if type(proto) is aioice.ice.StunProtocol:
            # The raw non-blocking socket: asyncio's DatagramTransport.sendto adds a Python
            # layer per packet and queues when the kernel is full; media would rather drop.
            sock = getattr(proto.transport, "_sock", None)
            # A relayed candidate's transport is aioice's TURN wrapper (no socket of its own:
            # it frames each packet for the TURN server), still synchronous to call.
            self.direct = isinstance(sock, socket.socket)
            self.sendto: Callable[[bytes, tuple], None] = (
                sock.sendto if self.direct else proto.transport.sendto
            )
            if self.direct and self.srtp is not None:
                self.fd = sock.fileno()
        else:
            self._send_data: Callable[[bytes, tuple], Awaitable[None]] = proto.send_data
            self.sendto = self._enqueue
            self.direct = False
            self._task = asyncio.ensure_future(self._drain())

    def moved(self) -> bool:
        """Whether ICE has nominated another pair since: the viewer's address changed (Wi-Fi
        to 4G) and its checks from the new one succeeded. What is sent must follow it."""
        return self._dtls.transport._connection._nominated.get(1) not in (None, self._pair)

    def send_rtcp(self, data: bytes) -> None:
        self.sendto(self.protect_rtcp(data), self.addr)

    def _enqueue(self, data: bytes, addr: tuple) -> None:
        self._queue.append((data, addr))
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                data, addr = self._queue.popleft()
                try:
                    await self._send_data(data, addr)
                except Exception:  # noqa: BLE001 - connection gone; the owner closes us
                    self._queue.clear()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class _DiscardFrames(queue.Queue):
    """Stands in for an RTCRtpReceiver's decoder queue: frames are dropped, never decoded;
    only the stop marker reaches the decoder thread so it ends cleanly."""

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)


# (ssrc, seq, ts, marker, payload) for the track a payload type belongs to
RtpSink = Callable[[int, int, int, int, bytes], None]


class IngestTap:
    """Taps a publisher connection's decrypted RTP and routes it by payload type."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._routes: dict[int, tuple[RtpSink, bool]] = {}
        self._rtx_ssrc: dict[int, int] = {}
        self._tapped: set[int] = set()
        self.malformed = 0

    def route(self, payload_type: int, sink: RtpSink, rtx_payload_type: int | None) -> None:
        self._routes[payload_type] = (sink, False)
        if rtx_payload_type is not None:
            self._routes[rtx_payload_type] = (sink, True)

    def install(self) -> None:
        """Call after setRemoteDescription and before setLocalDescription."""
        for transceiver in self._pc.getTransceivers():
            receiver = transceiver.receiver
            receiver._RTCRtpReceiver__decoder_queue = _DiscardFrames()
            dtls = receiver.transport
            if id(dtls) in self._tapped:
                continue
            self._tapped.add(id(dtls))
            original = dtls._handle_rtp_data

            async def handle_rtp_data(data: bytes, arrival_time_ms: int, _orig=original) -> None:
                self._forward(data)
                await _orig(data, arrival_time_ms)

            dtls._handle_rtp_data = handle_rtp_data

    def on_sender_report(self, receiver: RTCRtpReceiver, sink: Callable[[int, int], None]) -> None:
        original = receiver._handle_rtcp_packet

        async def handle_rtcp(packet, _orig=original) -> None:
            if isinstance(packet, RtcpSrPacket):
                sink(packet.sender_info.rtp_timestamp, packet.sender_info.ntp_timestamp)
            await _orig(packet)

        receiver._handle_rtcp_packet = handle_rtcp

    def _forward(self, data: bytes) -> None:
        try:
            marker, pt, seq, ts, ssrc, start, end = parse_header(data)
        except RtpHeaderError:
            self.malformed += 1
            return
        route = self._routes.get(pt)
        if route is None:
            return
        sink, is_rtx = route
        if is_rtx:
            # RTX (RFC 4588): original sequence number, then the original payload.
            if end - start <= 2:
                return  # padding-only probe
            seq = (data[start] << 8) | data[start + 1]
            start += 2
            ssrc = self._rtx_ssrc.get(ssrc, ssrc)
        sink(ssrc, seq, ts, marker, data[start:end])

    def map_rtx_ssrc(self, rtx_ssrc: int, media_ssrc: int) -> None:
        self._rtx_ssrc[rtx_ssrc] = media_ssrc


def send_pli(receiver: RTCRtpReceiver, path: SendPath | None, media_ssrc: int) -> None:
    """Ask the publisher for a keyframe (one PLI) on the direct path."""
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
    if path is None or rtcp_ssrc is None:
        raise ConnectionError("publisher not connected")
    path.send_rtcp(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc, media_ssrc=media_ssrc)))


class ViewerFeedback:
    """What a viewer's RTCP asks of one of our senders."""

    def on_receiver_report(self, report) -> None: ...

    def on_nack(self, lost: list[int]) -> None: ...

    def on_keyframe_request(self) -> None: ...

    def on_remb(self, bitrate: int) -> None: ...


async def _idle(started: asyncio.Event, exited: asyncio.Event) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    exited.set()


def route_feedback(packet, ssrc: int, feedback: ViewerFeedback) -> None:
    """Hand one parsed RTCP packet from a viewer to what it asks of sender ``ssrc``."""
    if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
        for report in packet.reports:
            if report.ssrc == ssrc:
                feedback.on_receiver_report(report)
    elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        feedback.on_nack(packet.lost)
    elif isinstance(packet, RtcpPsfbPacket):
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            feedback.on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            feedback.on_remb(bitrate)


def take_over_sender(sender: RTCRtpSender, feedback: ViewerFeedback) -> None:
    """Silence aiortc's encode and RTCP loops for this sender and route its RTCP to us.

    Call before setLocalDescription (aiortc starts the loops once connected)."""

    async def run_rtp(codec) -> None:
        await _idle(sender._RTCRtpSender__rtp_started, sender._RTCRtpSender__rtp_exited)

    async def run_rtcp() -> None:
        await _idle(sender._RTCRtpSender__rtcp_started, sender._RTCRtpSender__rtcp_exited)

    async def handle_rtcp(packet) -> None:
        route_feedback(packet, sender._ssrc, feedback)

    sender._run_rtp = run_rtp
    sender._run_rtcp = run_rtcp
    sender._handle_rtcp_packet = handle_rtcp
