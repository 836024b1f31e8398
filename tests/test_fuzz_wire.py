"""Fuzzing the wire parsers: whatever bytes arrive, no exception escapes a parser but the
one its callers expect (RtpHeaderError, ValueError, a close code), and what it accepts
means what it says.

Each property is a ``WireProperty`` (inputs, check), run here with a seeded, bounded
profile and by ``scripts/fuzz_wire.py`` with a large example count for minutes.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiortc import RTCConfiguration
from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.candidates import filter_candidates
from media.codecs import media_kinds, offered_video_codecs, parse_offer
from media.fastpath import route_feedback
from media.forwarder import Downtrack, Forwarder
from media.keyframes import KeyframeRequester
from media.peers import _TrackFeedback
from media.pipe import PipeOut, _Destination, _plain
from media.rtcp import sdes_cname, sender_report
from media.rtp import (
    RtpHeaderError,
    h264_is_keyframe,
    parse_extensions,
    parse_header,
    vp8_is_keyframe,
)
from media.session import SessionMedia
from server.attendance.events import canonical, chain_hash, data_from_json, data_json
from server.web.lean_socket import INTERNAL_ERROR, LeanSocket

PROFILE = settings(
    derandomize=True,
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class WireProperty:
    name: str
    inputs: st.SearchStrategy
    check: Callable[[object], None]


# -- RTP --------------------------------------------------------------------------------
def rtp_like() -> st.SearchStrategy[bytes]:
    """Version 2 headers with any flags, CSRC count and extension length, any tail."""
    return st.builds(
        lambda flags, b1, seq, ts, ssrc, tail: (
            struct.pack("!BBHII", 0x80 | flags, b1, seq, ts, ssrc) + tail
        ),
        st.integers(0, 0x3F),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.one_of(
            st.binary(max_size=80),
            # a one-byte or two-byte extension block, then anything
            st.builds(
                lambda profile, words, body: struct.pack("!HH", profile, words) + body,
                st.sampled_from([0xBEDE, 0x1000, 0x1001, 0]),
                st.integers(0, 20),
                st.binary(max_size=80),
            ),
        ),
    )


def check_rtp(data: bytes) -> None:
    try:
        marker, pt, seq, ts, ssrc, start, end = parse_header(data)
    except RtpHeaderError:
        return
    assert 12 <= start <= end <= len(data)
    assert marker in (0, 1) and 0 <= pt < 128
    assert all(isinstance(k, int) for k in parse_extensions(data))
    payload = data[start:end]
    assert vp8_is_keyframe(payload) in (True, False)
    assert h264_is_keyframe(payload) in (True, False)


def check_keyframe(payload: bytes) -> None:
    assert vp8_is_keyframe(payload) in (True, False)
    assert h264_is_keyframe(payload) in (True, False)


# -- RTCP -------------------------------------------------------------------------------
def rtcp_like() -> st.SearchStrategy[bytes]:
    """Compound packets of RTCP-shaped parts: any count/format, type, length, body."""
    part = st.builds(
        lambda first, pt, length, body: (
            bytes([0x80 | first, pt]) + struct.pack("!H", length) + body
        ),
        st.integers(0, 0x3F),
        st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]),
        st.integers(0, 40),
        st.binary(max_size=100),
    )
    return st.lists(part, min_size=1, max_size=3).map(b"".join)


def feedback_like() -> st.SearchStrategy[bytes]:
    """A PLI or NACK header (RFC 4585) with a body of any length, short ones included."""
    return st.builds(
        lambda pt, body: bytes([0x81, pt]) + body,
        st.sampled_from([205, 206]),
        st.binary(max_size=24),
    )


def viewer_track(kind: str = "video") -> tuple[Forwarder, Downtrack, list[bytes]]:
    """A forwarder with some packets cached, and one bound viewer whose sends are kept."""
    fwd = Forwarder(kind, 90000, None, KeyframeRequester(lambda: None, 0.0))
    sent: list[bytes] = []
    dt = Downtrack(1234, 96)
    dt.bind(_plain, lambda data, addr: sent.append(data), ("127.0.0.1", 9))
    fwd.add(dt)
    for seq in range(100):
        fwd.push(5678, seq, seq * 3000, 0, b"\x00" * 20)
    return fwd, dt, sent


def check_rtcp_from_a_viewer(data: bytes) -> None:
    """aiortc's parser raises ValueError only (its DTLS loop catches that and nothing
    else); whatever it accepts, our feedback handling takes without raising."""
    try:
        packets = RtcpPacket.parse(data)
    except ValueError:
        return
    fwd, dt, _ = viewer_track()
    feedback = _TrackFeedback(fwd, dt)

    async def route() -> None:  # receiver reports read the loop's clock
        for packet in packets:
            route_feedback(packet, dt.ssrc, feedback)
            route_feedback(packet, getattr(packet, "media_ssrc", 0), feedback)

    asyncio.run(route())


def check_rtcp_we_write(args: tuple) -> None:
    ssrc, ntp, rtp_ts, packets, octets, cname = args
    parsed = RtcpPacket.parse(sender_report(ssrc, ntp, rtp_ts, packets, octets))
    assert len(parsed) == 1 and isinstance(parsed[0], RtcpSrPacket)
    info = parsed[0].sender_info
    assert parsed[0].ssrc == ssrc and info.ntp_timestamp == ntp
    assert (info.rtp_timestamp, info.packet_count, info.octet_count) == (
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    sdes = RtcpPacket.parse(sdes_cname(ssrc, cname))
    assert isinstance(sdes[0], RtcpSdesPacket)
    assert sdes[0].chunks[0].ssrc == ssrc and sdes[0].chunks[0].items == [(1, cname)]


def check_pipe_feedback(data: bytes) -> None:
    """A fed process's RTCP (PLI, NACK) to the origin: anything else is refused."""
    fwd_a, dt_a, _ = viewer_track("audio")
    fwd_v, dt_v, _ = viewer_track("video")
    pipe = PipeOut(fwd_a, fwd_v)
    addr = ("127.0.0.1", 9)
    dest = _Destination(addr)
    dest.audio, dest.video = dt_a, dt_v
    pipe.destinations[addr] = dest
    pipe._received(data, addr)


# -- SDP --------------------------------------------------------------------------------
OFFER = (
    "v=0\r\no=- 4005594456 4005594456 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=msid-semantic:WMS *\r\n"
    "m=audio 51883 UDP/TLS/RTP/SAVPF 96 0\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=ssrc:1018889116 cname:71dd93d9\r\n"
    "a=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=candidate:1657 1 udp 2130706431 127.0.0.1 51883 typ host\r\n"
    "a=candidate:1658 1 udp 2130706431 5b1c-9e.local 51884 typ host\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:URzB\r\na=ice-pwd:Qx1XsnlYUsONe6AesqSZiS\r\n"
    "a=fingerprint:sha-256 D3:C5:04:4A:4C:63:95:4F:B7:86:11:9A:D0:74:27:AC:41:6D:B0:D3:0A:"
    "81:68:C0:25:FF:E2:66:E2:62:45:1F\r\na=setup:actpass\r\n"
    "m=video 57476 UDP/TLS/RTP/SAVPF 99 100\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=mid:1\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=ssrc:564781916 cname:71dd93d9\r\n"
    "a=rtpmap:99 H264/90000\r\na=rtcp-fb:99 nack\r\na=rtcp-fb:99 nack pli\r\n"
    "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
    "a=rtpmap:100 VP8/90000\r\n"
    "a=candidate:1657 1 udp 2130706431 127.0.0.1 57476 typ host\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:URzB\r\na=ice-pwd:Qx1XsnlYUsONe6AesqSZiS\r\n"
    "a=fingerprint:sha-256 D3:C5:04:4A:4C:63:95:4F:B7:86:11:9A:D0:74:27:AC:41:6D:B0:D3:0A:"
    "81:68:C0:25:FF:E2:66:E2:62:45:1F\r\na=setup:actpass\r\n"
)
OFFER_LINES = OFFER.split("\r\n")
TOKENS = ["0", "1", "9", "", "-1", "x", "99999999999", "H264/90000", "video", "é", ":", "/"]


def mutated_offer() -> st.SearchStrategy[str]:
    """The offer above with lines dropped, repeated, moved or with a word replaced."""
    edit = st.tuples(
        st.sampled_from(["drop", "repeat", "move", "word"]),
        st.integers(0, len(OFFER_LINES) - 1),
        st.integers(0, len(OFFER_LINES) - 1),
        st.integers(0, 8),
        st.sampled_from(TOKENS),
    )

    def apply(edits: list[tuple]) -> str:
        lines = list(OFFER_LINES)
        for op, i, j, w, token in edits:
            i, j = i % len(lines), j % len(lines)
            if op == "drop":
                del lines[i]
            elif op == "repeat":
                lines.insert(j, lines[i])
            elif op == "move":
                lines.insert(j, lines.pop(i))
            else:
                words = re.split(r"([ :=/])", lines[i])
                words[w % len(words)] = token
                lines[i] = "".join(words)
            if not lines:
                lines = [""]
        return "\r\n".join(lines)

    return st.lists(edit, min_size=1, max_size=4).map(apply)


def offer_with_candidate() -> st.SearchStrategy[str]:
    """The offer with one candidate line of any words (mDNS names, addresses, gaps)."""
    words = st.sampled_from([*TOKENS, "typ", "host", "udp", "ab-1.local", "127.0.0.1", "::1"])
    return st.lists(words, max_size=9).map(
        lambda ws: OFFER.replace(
            "a=candidate:1657 1 udp 2130706431 127.0.0.1 51883 typ host",
            "a=candidate:" + " ".join(ws),
        )
    )


_MEDIA: dict[str, SessionMedia] = {}


def check_offer(text: str) -> None:
    """parse_offer raises ValueError only; an offer it takes has what the relay needs; the
    viewer check raises ValueError (CodecMismatch) only; the candidate filter never raises."""
    for allowed in (("127.0.0.0/8",), None):
        for line in filter_candidates(text, allowed).splitlines():
            if line.startswith("a=candidate:"):
                parts = line.split()
                assert parts[6] == "typ" and not parts[4].endswith(".local"), line
    try:
        desc = parse_offer(text)
    except ValueError:
        return
    kinds = media_kinds(desc)
    assert kinds and set(kinds) <= {"audio", "video"}
    assert set(offered_video_codecs(desc)) <= {"VP8", "H264"}
    for codec in ("H264", "VP8"):
        media = _MEDIA.get(codec)
        if media is None:
            media = _MEDIA[codec] = SessionMedia("fuzz", codec, RTCConfiguration(iceServers=[]))
        try:
            media.check_viewer_offer(text)
        except ValueError:
            pass


# -- the heartbeat WebSocket's frames ---------------------------------------------------
MAX_MESSAGE = 64


class _Wire(asyncio.Transport):
    """What the socket writes goes to a list; the page's side is the test's."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.paused = False

    def write(self, data) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def client_frame(opcode: int, fin: bool, payload: bytes, mask: bytes, length: int) -> bytes:
    """A masked client frame; ``length`` picks the 7-bit, 16-bit or 64-bit length form."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if length == 0 and n < 126:
        head += bytes([0x80 | n])
    elif length <= 1 and n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_stream() -> st.SearchStrategy[tuple[bytes, list[int]]]:
    """Frames (well formed or not, any opcode, fragments, bad UTF-8, over the limit) or
    raw bytes, cut into pieces at any points."""
    frame = st.one_of(
        st.builds(
            client_frame,
            st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
            st.booleans(),
            st.one_of(
                st.text(max_size=40).map(str.encode),
                st.binary(max_size=MAX_MESSAGE + 10),
            ),
            st.binary(min_size=4, max_size=4),
            st.integers(0, 2),
        ),
        st.binary(max_size=20),
    )
    return st.tuples(
        st.lists(frame, max_size=6).map(b"".join),
        st.lists(st.integers(0, 400), max_size=5),
    )


def check_ws_frames(args: tuple[bytes, list[int]]) -> None:
    """The socket ends with a protocol close code or hands on whole UTF-8 messages within
    the limit; never an exception out of feed_data, never 1011 (a fault of ours)."""
    data, cuts = args
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    messages: list[bytes] = []

    async def run() -> LeanSocket:
        sock = LeanSocket(_Wire(), lambda s, text: messages.append(text), MAX_MESSAGE)
        for piece in pieces:
            sock.feed_data(piece)
        return sock

    sock = asyncio.run(run())
    assert sock.close_code != INTERNAL_ERROR
    for text in messages:
        text.decode()
        assert len(text) <= MAX_MESSAGE


# -- the ledger's canonical form --------------------------------------------------------
# What events hold: flat str/int/bool fields (lone surrogates included: a client may send
# them, and canonical() must refuse them with ValueError, never write them).
ANY_TEXT = st.text(st.characters(codec=None), max_size=12)
EVENT_DATA = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.booleans(), ANY_TEXT), max_size=5
)


def _has_surrogate(*texts: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for t in texts for c in t)


def check_canonical(args: tuple) -> None:
    session, seq, at_ms, kind, data = args
    strings = [session, kind, *data, *(v for v in data.values() if isinstance(v, str))]
    try:
        out = canonical(session, seq, at_ms, kind, data)
    except ValueError:
        assert _has_surrogate(*strings), "refused text that has no lone surrogate"
        return
    assert not _has_surrogate(*strings), "wrote a lone surrogate"
    whole = {"at_ms": at_ms, "data": data, "kind": kind, "seq": seq, "session": session}
    assert (
        out == json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert json.loads(out) == whole
    assert canonical(session, seq, at_ms, kind, data, data_json(data)) == out
    assert data_from_json(data_json(data)) == data
    assert re.fullmatch("[0-9a-f]{64}", chain_hash("0" * 64, out))


PROPERTIES = [
    WireProperty("rtp_header", st.one_of(st.binary(max_size=64), rtp_like()), check_rtp),
    WireProperty("keyframe_detectors", st.binary(max_size=40), check_keyframe),
    WireProperty(
        "rtcp_from_a_viewer",
        st.one_of(st.binary(max_size=64), rtcp_like()),
        check_rtcp_from_a_viewer,
    ),
    WireProperty(
        "rtcp_we_write",
        st.tuples(
            st.integers(0, 0xFFFFFFFF),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**40),
            st.integers(0, 2**40),
            st.integers(0, 2**40),
            st.binary(max_size=255),
        ),
        check_rtcp_we_write,
    ),
    WireProperty(
        "pipe_feedback",
        st.one_of(st.binary(max_size=40), rtcp_like(), feedback_like()),
        check_pipe_feedback,
    ),
    WireProperty(
        "sdp_offer",
        st.one_of(mutated_offer(), offer_with_candidate(), st.text(max_size=200)),
        check_offer,
    ),
    WireProperty("ws_frames", ws_stream(), check_ws_frames),
    WireProperty(
        "ledger_canonical",
        st.tuples(ANY_TEXT, st.integers(0, 2**53), st.integers(0, 2**53), ANY_TEXT, EVENT_DATA),
        check_canonical,
    ),
]


def run_property(prop: WireProperty, profile: settings) -> None:
    profile(given(prop.inputs)(prop.check))()


@pytest.mark.parametrize("prop", PROPERTIES, ids=[p.name for p in PROPERTIES])
def test_a_wire_parser_raises_nothing_but_its_documented_error(prop):
    run_property(prop, PROFILE)


def test_a_pipe_nack_too_short_for_its_media_ssrc_is_refused():
    fwd_a, dt_a, _ = viewer_track("audio")
    fwd_v, dt_v, _ = viewer_track("video")
    pipe = PipeOut(fwd_a, fwd_v)
    addr = ("127.0.0.1", 9)
    pipe.destinations[addr] = _Destination(addr)
    pipe._received(bytes([0x81, 205, 0, 2, 0, 0, 0, 1]), addr)  # 8 bytes: no media ssrc
    assert pipe.refused == 1
