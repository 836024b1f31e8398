"""Which codecs the relay forwards, and picking them from offers (SDP is parsed by aiortc)."""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from media.rtp import keyframe_detector

VIDEO_CODECS = ("VP8", "H264")
AUDIO_CODEC = "opus"


class CodecMismatch(ValueError):
    """The offer has no codec the session can use."""


def parse_offer(sdp_text: str) -> SessionDescription:
    """Parse an SDP offer, raising ValueError with a reason when it is not usable SDP."""
    if not sdp_text.lstrip().startswith("v=0"):
        raise ValueError("SDP must start with v=0")
    try:
        desc = SessionDescription.parse(sdp_text)
    except Exception as exc:  # aiortc raises several types on bad input
        raise ValueError(f"malformed SDP: {exc}") from None
    if not any(m.kind in ("audio", "video") for m in desc.media):
        raise ValueError("SDP has no audio or video section")
    for m in desc.media:
        if m.kind in ("audio", "video") and (m.ice is None or not m.ice.usernameFragment):
            raise ValueError("SDP lacks ICE credentials")
        if m.kind in ("audio", "video") and (m.dtls is None or not m.dtls.fingerprints):
            raise ValueError("SDP lacks a DTLS fingerprint")
    mids = {m.rtp.muxId for m in desc.media}
    for group in desc.group:
        unknown = [mid for mid in group.items if mid not in mids]
        if group.semantic == "BUNDLE" and unknown:  # aiortc would bundle onto no transport
            raise ValueError(f"SDP BUNDLE group names mid {unknown[0]}, which no section has")
    return desc


def media_kinds(desc: SessionDescription) -> tuple[str, ...]:
    """The audio/video sections of an offer, in order, one of each kind."""
    kinds: list[str] = []
    for m in desc.media:
        if m.kind in ("audio", "video") and m.kind not in kinds:
            kinds.append(m.kind)
    return tuple(kinds)


def offered_video_codecs(desc: SessionDescription) -> list[str]:
    """Names of the forwardable video codecs offered, in the offer's order."""
    names: list[str] = []
    for m in desc.media:
        if m.kind != "video":
            continue
        for codec in m.rtp.codecs:
            name = codec.mimeType.split("/")[1]
            if name.upper() in VIDEO_CODECS and name.upper() not in names:
                if (
                    name.upper() == "H264"
                    and str(codec.parameters.get("packetization-mode")) != "1"
                ):
                    continue
                names.append(name.upper())
    return names


def capabilities(kind: str, name: str, with_rtx: bool) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for one codec (all its H264 profiles), plus RTX if asked."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in caps if c.mimeType.split("/")[1].lower() == name.lower()]
    if with_rtx:
        chosen += [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    return chosen


def mime_of(kind: str, name: str) -> str:
    return f"{kind}/{name}"


__all__ = [
    "AUDIO_CODEC",
    "VIDEO_CODECS",
    "CodecMismatch",
    "capabilities",
    "keyframe_detector",
    "media_kinds",
    "mime_of",
    "offered_video_codecs",
    "parse_offer",
]
