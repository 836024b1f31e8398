"""RTP wire helpers on literal bytes."""

from __future__ import annotations

import pytest

from media.rtp import (
    RtpHeaderError,
    build_extensions,
    h264_is_keyframe,
    parse_extensions,
    parse_header,
    seq_newer,
    vp8_is_keyframe,
)

# V=2 X=1, M=1 PT=96, seq 0x1234, ts 0x01020304, ssrc 0xAABBCCDD,
# extension 0xBEDE len 1: id 3 len 1 value "0" (mid), pad; payload 10 20 30
PACKET = bytes.fromhex("90e0123401020304aabbccddbede000130300000102030")


def test_parse_header_finds_payload_after_extensions():
    marker, pt, seq, ts, ssrc, start, end = parse_header(PACKET)
    assert (marker, pt, seq, ts, ssrc) == (1, 96, 0x1234, 0x01020304, 0xAABBCCDD)
    assert PACKET[start:end] == bytes.fromhex("102030")


def test_parse_header_strips_padding_and_csrcs():
    # P=1, CC=1; one CSRC; payload AA BB; 2 bytes of padding (last byte = 2)
    pkt = bytes.fromhex("a1000001000000020000000311111111aabb0002")
    *_, start, end = parse_header(pkt)
    assert pkt[start:end] == bytes.fromhex("aabb")


@pytest.mark.parametrize(
    "bad",
    [
        b"\x80\x00",
        bytes.fromhex("40000001000000020000000300"),
        bytes.fromhex("900000010000000200000003bede"),
    ],
)
def test_parse_header_rejects_garbage(bad):
    with pytest.raises(RtpHeaderError):
        parse_header(bad)


def test_extensions_round_trip_one_byte_form():
    block = build_extensions([(3, b"0"), (5, b"\x01\x02\x03")])
    assert block == bytes.fromhex("bede00023030520102030000")
    pkt = bytes.fromhex("90600001000000020000000300")[:12]
    assert parse_extensions(bytes([pkt[0]]) + pkt[1:] + block) == {3: b"0", 5: b"\x01\x02\x03"}


def test_vp8_keyframe_detection():
    # S=1 PID=0, no X; VP8 payload header with P=0 (key frame)
    assert vp8_is_keyframe(bytes.fromhex("10502c019d012a"))
    # inter frame: P bit set
    assert not vp8_is_keyframe(bytes.fromhex("1031"))
    # not the start of a partition
    assert not vp8_is_keyframe(bytes.fromhex("00502c01"))
    # X=1, I=1 with 15-bit picture id (M bit), then key frame
    assert vp8_is_keyframe(bytes.fromhex("90808001502c01"))


def test_h264_keyframe_detection():
    assert h264_is_keyframe(bytes.fromhex("65888421"))  # IDR slice
    assert h264_is_keyframe(bytes.fromhex("6742c01f"))  # SPS
    assert not h264_is_keyframe(bytes.fromhex("419a2b"))  # non-IDR slice
    # STAP-A with SPS (size 2) and PPS (size 2)
    assert h264_is_keyframe(bytes.fromhex("1800026742000268ce"))
    # FU-A start fragment of an IDR, and a middle fragment
    assert h264_is_keyframe(bytes.fromhex("7c85aa"))
    assert not h264_is_keyframe(bytes.fromhex("7c05aa"))


def test_sequence_comparison_wraps():
    assert seq_newer(1, 0xFFFF)
    assert not seq_newer(0xFFFF, 1)
    assert not seq_newer(5, 5)
