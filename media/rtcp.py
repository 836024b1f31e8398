"""RTCP the relay writes itself: sender report + SDES CNAME, as bytes (RFC 3550)."""

from __future__ import annotations

import struct

_SR = struct.Struct("!BBHIQIII")


def sender_report(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    """An SR with no report blocks (we receive nothing from viewers)."""
    return _SR.pack(
        0x80, 200, 6, ssrc, ntp, rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF
    )


def sdes_cname(ssrc: int, cname: bytes) -> bytes:
    """One SDES chunk with a CNAME item, padded to a 32-bit boundary."""
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
