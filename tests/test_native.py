"""The native fan-out loop (media/_fanout.c, issue 29) sends the very bytes the Python loop
does: the same header rewrite, the same SRTP (libsrtp2 against aiortc's pylibsrtp, key for
key), to every viewer of a packet, one failing viewer costing the others nothing."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from media import native
from media.forwarder import Downtrack, Forwarder
from media.rtp import HEADER

pytestmark = pytest.mark.skipif(not native.BUILT, reason="the native loop is not built here")

PROFILES = {  # libsrtp profile: master key + salt length
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}


def aiortc_side(key: bytes, profile: int) -> Session:
    """What aiortc protects a viewer's RTP with (rtcdtlstransport.py's tx policy)."""
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def rtp(seq: int, ts: int = 90_000, ssrc: int = 0x1234ABCD, payload: bytes = b"x" * 900) -> bytes:
    return HEADER.pack(0x80, 96, seq, ts, ssrc) + payload


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: f"profile{p}")
def test_native_srtp_is_byte_for_byte_aiortcs_across_a_sequence_wrap(profile):
    key = os.urandom(PROFILES[profile])
    ours, theirs = native.srtp(key, profile), aiortc_side(key, profile)
    for seq in (65533, 65534, 65535, 0, 1, 2):  # the rollover counter moves at the wrap
        packet = rtp(seq)
        assert ours.protect(packet) == theirs.protect(packet), seq
    with pytest.raises(ValueError):
        native.srtp(key[:-1], profile)
    with pytest.raises(ValueError):
        ours.protect(b"\x80\x60")


def udp_pair() -> tuple[socket.socket, socket.socket]:
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    send.bind(("127.0.0.1", 0))
    send.setblocking(False)
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    recv.settimeout(2)
    return send, recv


def test_the_native_loop_sends_what_the_python_loop_sends_and_survives_a_dead_viewer():
    native.use("native")
    key = os.urandom(30)
    profile = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    fwd = Forwarder("audio", 48000)
    sockets, viewers = [], []
    for i in range(4):
        send, recv = udp_pair()
        sockets.append((send, recv))
        dt = Downtrack(0x1000 + i, 111, [(1, b"\x01")] if i == 1 else None)
        srtp = native.srtp(key, profile)
        dt.bind(srtp.protect, send.sendto, recv.getsockname(), srtp, send.fileno())
        assert dt.native is not None
        fwd.add(dt)
        viewers.append(dt)
    dead = viewers[3]
    sockets[3][0].close()  # its socket is gone: its sends fail, the others' do not
    for seq in range(100, 105):
        fwd.push(0xAA, seq, seq * 960, seq == 104, b"opus" * 20)
    assert fwd.send_errors == 5 and dead.errors == 5
    for i, dt in enumerate(viewers[:3]):
        # what the Python loop would have sent this viewer, protected by a twin context
        twin = aiortc_side(key, profile)
        recv = sockets[i][1]
        for k, seq in enumerate(range(100, 105)):
            expected = twin.protect(
                dt.build(seq + fwd.mapper.seq_off, seq == 104, seq * 960, b"opus" * 20)
            )
            assert recv.recv(2048) == expected, (i, k)
        assert (dt.packets, dt.octets) == (5, 5 * 80)
    for send, recv in sockets:
        send.close()
        recv.close()


def test_one_packet_goes_natively_to_one_viewer_and_by_python_to_a_relayed_one():
    """A viewer on a plain UDP socket and one whose pair is relayed (no socket of its own:
    aioice's TURN wrapper) in one forwarder: each loop sends its own, the same bytes."""
    native.use("native")
    key = os.urandom(30)
    fwd = Forwarder("audio", 48000)
    (a_send, a_recv), (b_send, b_recv) = udp_pair(), udp_pair()
    direct, relayed = Downtrack(0x2001, 111), Downtrack(0x2002, 111)
    srtp = native.srtp(key, 1)
    direct.bind(srtp.protect, a_send.sendto, a_recv.getsockname(), srtp, a_send.fileno())
    other = native.srtp(key, 1)
    relayed.bind(other.protect, b_send.sendto, b_recv.getsockname(), other)  # no fd
    assert direct.native is not None and relayed.native is None
    for dt in (direct, relayed):
        fwd.add(dt)
    fwd.push(0xBB, 7, 960, 0, b"frame")
    assert fwd._native == [direct.native] and fwd._python == [relayed]
    for dt, recv in ((direct, a_recv), (relayed, b_recv)):
        twin = aiortc_side(key, 1)
        assert recv.recv(2048) == twin.protect(dt.build(7 + fwd.mapper.seq_off, 0, 960, b"frame"))
        assert dt.packets == 1
    for s in (a_send, a_recv, b_send, b_recv):
        s.close()


def test_python_is_chosen_when_asked_and_binds_no_native_copy():
    try:
        assert native.use("python") == "python"
        dt = Downtrack(1, 96)
        send, recv = udp_pair()
        srtp = native.srtp(os.urandom(30), 1)
        dt.bind(srtp.protect, send.sendto, recv.getsockname(), srtp, send.fileno())
        assert dt.native is None
        send.close()
        recv.close()
        with pytest.raises(ValueError):
            native.use("fast")
    finally:
        native.use("native")


@settings(max_examples=150, deadline=None)
@given(
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    seq_off=st.integers(0, 0xFFFF),
    ts_off=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    pt=st.integers(0, 127),
    marker=st.booleans(),
    ext=st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=3),
    payload=st.binary(max_size=1200),
)
def test_any_packet_the_native_loop_sends_is_the_python_loops(
    seq, ts, seq_off, ts_off, ssrc, pt, marker, ext, payload
):
    native.use("native")
    key = os.urandom(30)
    send, recv = udp_pair()
    try:
        dt = Downtrack(ssrc, pt, ext or None)
        dt.seq_off, dt.ts_off = seq_off, ts_off
        srtp = native.srtp(key, 1)
        dt.bind(srtp.protect, send.sendto, recv.getsockname(), srtp, send.fileno())
        dt.native.seq_off, dt.native.ts_off = seq_off, ts_off
        assert native.fanout([dt.native], marker, seq, ts, payload) == 1
        expected = aiortc_side(key, 1).protect(dt.build(seq, marker, ts, payload))
        assert recv.recv(4096) == expected
    finally:
        send.close()
        recv.close()
