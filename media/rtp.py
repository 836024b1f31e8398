"""RTP wire format helpers: pure functions over bytes, no I/O."""

from __future__ import annotations

import struct

HEADER = struct.Struct("!BBHII")
# One-byte header extension profile (RFC 8285).
ONE_BYTE_PROFILE = 0xBEDE


class RtpHeaderError(ValueError):
    pass


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """Return (marker, payload_type, seq, timestamp, ssrc, payload_start, payload_end).

    The payload excludes CSRCs, header extensions and padding.
    """
    n = len(data)
    if n < 12:
        raise RtpHeaderError("RTP packet shorter than its header")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpHeaderError("not RTP version 2")
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if start + 4 > n:
            raise RtpHeaderError("truncated header extension")
        start += 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    end = n
    if b0 & 0x20:
        end -= data[-1]
    if start > end:
        raise RtpHeaderError("RTP header longer than the packet")
    return b1 >> 7, b1 & 0x7F, seq, ts, ssrc, start, end


def parse_extensions(data: bytes) -> dict[int, bytes]:
    """The one-byte-header extension elements of a packet, by id (two-byte form: by id too)."""
    b0 = data[0]
    if not b0 & 0x10:
        return {}
    pos = 12 + 4 * (b0 & 0x0F)
    profile, words = struct.unpack_from("!HH", data, pos)
    pos += 4
    end = pos + 4 * words
    out: dict[int, bytes] = {}
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:
                pos += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15:
                break
            out[ext_id] = bytes(data[pos + 1 : pos + 1 + length])
            pos += 1 + length
    elif profile >> 4 == 0x100:
        while pos + 1 < end:
            ext_id, length = data[pos], data[pos + 1]
            if ext_id == 0:
                pos += 1
                continue
            out[ext_id] = bytes(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
    return out


def build_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """A one-byte-header extension block (profile, length, elements, zero padding)."""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", ONE_BYTE_PROFILE, len(body) // 4) + body


def vp8_is_keyframe(payload: bytes) -> bool:
    """True when the packet starts a VP8 key frame (RFC 7741 payload descriptor)."""
    if len(payload) < 1:
        return False
    b0 = payload[0]
    if not b0 & 0x10 or b0 & 0x07:  # S bit set and partition index 0
        return False
    pos = 1
    if b0 & 0x80:  # X: extended control bits
        if len(payload) < 2:
            return False
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: picture id
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


def h264_is_keyframe(payload: bytes) -> bool:
    """True when the packet carries an IDR slice or SPS (RFC 6184: single NAL, STAP-A, FU-A)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: aggregated NAL units with 16-bit sizes
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start fragment of an IDR
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return False


def keyframe_detector(mime_type: str):
    kind = mime_type.lower()
    if kind == "video/vp8":
        return vp8_is_keyframe
    if kind == "video/h264":
        return h264_is_keyframe
    return None


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number a comes after b."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
