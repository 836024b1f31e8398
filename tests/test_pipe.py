"""The RTP pipe between relay processes, in one process over real UDP sockets on loopback."""

from __future__ import annotations

import socket

from media.forwarder import Forwarder
from media.keyframes import KeyframeRequester
from media.pipe import VIDEO_SSRC, PipeIn, PipeOut, nack, parse_nack
from media.rtp import vp8_is_keyframe
from tests.waiting import until

KEY = bytes([0x10, 0, 0, 0x9D, 0x01, 0x2A]) + b"k" * 50  # VP8 keyframe payload descriptor
DELTA = bytes([0x10, 0x01, 0, 0]) + b"d" * 50


def forwarders() -> tuple[Forwarder, Forwarder]:
    return Forwarder("audio", 48000), Forwarder(
        "video", 90000, vp8_is_keyframe, KeyframeRequester(lambda: None, 0.0)
    )


def test_nack_round_trip():
    seqs = [10, 11, 13, 26, 27, 500, 65535]
    assert sorted(parse_nack(nack(VIDEO_SSRC, seqs))) == sorted(seqs)


async def test_pipe_carries_media_keyframe_requests_and_retransmissions():
    o_audio, o_video = forwarders()
    f_audio, f_video = forwarders()
    received: list[tuple[int, bytes]] = []
    f_video.taps.append(lambda rseq, rts, marker, payload: received.append((rseq, payload)))
    out = PipeOut(o_audio, o_video)
    source = await out.open()
    pipe = PipeIn(f_audio, f_video, source)
    port = await pipe.open()
    out.add(("127.0.0.1", port))
    try:
        # video reaches the fed side from the first keyframe, in order
        o_video.push(1234, 100, 9000, 0, DELTA)  # before any keyframe: not sent down the pipe
        o_video.push(1234, 101, 9000, 1, KEY)
        o_video.push(1234, 102, 12000, 1, DELTA)
        o_audio.push(99, 5, 960, 0, b"opus")
        await until(lambda: len(received) == 2 and f_audio.packets_in == 1)
        assert [p for _, p in received] == [KEY, DELTA]
        assert (received[1][0] - received[0][0]) & 0xFFFF == 1

        # the relay clock travels in sender reports
        out.send_reports()
        await until(lambda: f_video._sr_anchor is not None)

        # a keyframe request from the fed side reaches the origin's requester
        sent = o_video.keyframes.sent
        pipe.request_keyframe()
        await until(lambda: o_video.keyframes.sent > sent)

        # a NACK the fed side's cache can't answer is answered by the origin
        dest = out.destinations[("127.0.0.1", port)]
        lost_out_seq = (101 + o_video.mapper.seq_off + dest.video.seq_off) & 0xFFFF
        pipe.request_retransmit("video", [lost_out_seq])
        await until(lambda: len(received) == 3)
        assert received[2][1] == KEY

        # datagrams from anyone but the origin are dropped
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(b"\x80\x60" + b"\x00" * 10 + b"x", ("127.0.0.1", port))
        stranger.close()
        await until(lambda: pipe.refused == 1)
        assert len(received) == 3
    finally:
        pipe.close()
        out.close()
