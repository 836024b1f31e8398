"""The RTCP we write, on literal bytes and against aiortc's own parser."""

from __future__ import annotations

from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket

from media.rtcp import sdes_cname, sender_report


def test_sender_report_bytes():
    data = sender_report(0x01020304, 0x1122334455667788, 0x0A0B0C0D, 5, 0x1_0000_0001)
    assert data == bytes.fromhex("80c800060102030411223344556677880a0b0c0d0000000500000001")


def test_sr_and_sdes_parse_as_one_compound_packet():
    data = sender_report(7, 1 << 32, 90000, 10, 12000) + sdes_cname(7, b"abcdef")
    sr, sdes = RtcpPacket.parse(data)
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == 7
    assert sr.sender_info.rtp_timestamp == 90000 and sr.sender_info.packet_count == 10
    assert isinstance(sdes, RtcpSdesPacket)
    assert sdes.chunks[0].ssrc == 7 and sdes.chunks[0].items == [(1, b"abcdef")]
    assert len(sdes_cname(7, b"abc")) % 4 == 0
