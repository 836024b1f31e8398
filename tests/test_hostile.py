"""A hostile viewer: real aiortc peers, one of which sends the relay malformed and absurd
SRTCP (a NACK of 1,000 packets, receiver reports at their limits, truncated packets, REMB
of 0 and of 2^40) and one that never reads; a well-behaved viewer beside them gets every
packet the lecturer sent."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiortc.rtp import is_rtcp

from media.forwarder import MAX_RESENDS_PER_NACK, RESEND_BURST, RESENDS_PER_S
from media.rtp import parse_header
from tests.client import watch
from tests.sources import hostile_feedback
from tests.test_forwarding import start_lecture
from tests.waiting import until


@pytest.fixture
def relay(relay_on_each_path):
    """Each test of this module on the native fan-out loop and on the Python one."""
    return relay_on_each_path


HOSTILE_S = 3.0


class SentLog:
    """The publisher's media packets as its DTLS transport sent them: (ssrc, seq)."""

    def __init__(self, pc) -> None:
        self.ssrcs = {t.sender._ssrc for t in pc.getTransceivers()}
        self.sent: set[tuple[int, int]] = set()
        self.on = False
        dtls = pc.getTransceivers()[0].sender.transport
        original = dtls._send_rtp

        async def send(data: bytes) -> None:
            if self.on and not is_rtcp(data):
                _, _, seq, _, ssrc, _, _ = parse_header(data)
                if ssrc in self.ssrcs:
                    self.sent.add((ssrc, seq))
            await original(data)

        dtls._send_rtp = send


class ReceivedLog:
    """A viewer's RTP as it arrived, decrypted: (ssrc, seq)."""

    def __init__(self, pc) -> None:
        self.received: set[tuple[int, int]] = set()
        dtls = pc.getTransceivers()[0].receiver.transport
        original = dtls._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            _, _, seq, _, ssrc, _, _ = parse_header(data)
            self.received.add((ssrc, seq))
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = handle


async def test_a_hostile_viewer_neither_crashes_the_relay_nor_costs_another_viewer_a_packet(
    relay, caplog
):
    caplog.set_level(logging.WARNING)
    links = relay.new_session(video_codec="VP8")
    sid = links["session_id"]
    pub = await start_lecture(relay, links, "VP8")
    sent = SentLog(pub.pc)
    good = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    received = ReceivedLog(good.pc)
    hostile = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    deaf = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
    media = relay.state.live.find(sid)
    try:
        await good.wait_frames("video", 10, timeout=15)
        await hostile.wait_frames("video", 1, timeout=15)
        await deaf.wait_frames("video", 1, timeout=15)
        for protocol in deaf.pc.getTransceivers()[
            0
        ].receiver.transport.transport._connection._protocols:
            protocol.transport.pause_reading()  # from now on it never reads its socket

        # The relay's numbering for the good viewer: publisher seq -> what the viewer gets.
        viewer = media.viewers[good.resource]
        out_of = {}
        for kind, fwd in (("audio", media.audio), ("video", media.video)):
            dt = viewer.tracks[kind][1]
            pub_ssrc = next(t.sender._ssrc for t in pub.pc.getTransceivers() if t.kind == kind)
            out_of[pub_ssrc] = (dt.ssrc, fwd.mapper.seq_off + dt.seq_off)

        bad = media.viewers[hostile.resource]
        video_dt = bad.tracks["video"][1]
        ssrcs = [dt.ssrc for _, dt in bad.tracks.values()]
        dtls = hostile.pc.getTransceivers()[0].receiver.transport
        me = 0x1234
        resent_before = media.video.retransmits
        nacks = 0
        sent.on = True
        loop = asyncio.get_running_loop()
        end = loop.time() + HOSTILE_S
        taken = False  # the hostile's report (all lost) was read as it came, at least once
        while loop.time() < end:
            newest = (media.video.mapper.last_rseq or 0) + video_dt.seq_off
            for packet in hostile_feedback(me, video_dt.ssrc, ssrcs, newest):
                await dtls._send_rtp(packet)
            nacks += 1
            await asyncio.sleep(0.05)
            # its connection's own receiver reports come too, now and then, and say 0 lost
            taken = taken or (video_dt.rr is not None and video_dt.rr[1] == 255)
        sent.on = False
        attack_s = loop.time() - end + HOSTILE_S

        # every media packet the lecturer sent meanwhile reached the good viewer
        expected = {(out_of[ssrc][0], (seq + out_of[ssrc][1]) & 0xFFFF) for ssrc, seq in sent.sent}
        assert len(expected) > 100
        await until(
            lambda: expected <= received.received,
            timeout=5,
            what=f"the good viewer missed {len(expected - received.received)} of "
            f"{len(expected)} packets",
        )
        # a NACK is answered for a bounded number of packets, at a bounded rate, not for the
        # 1,000 it names each time
        resent = media.video.retransmits - resent_before
        bound = min(nacks * MAX_RESENDS_PER_NACK, RESEND_BURST + RESENDS_PER_S * attack_s)
        assert nacks > 10 and resent <= bound, (resent, nacks, bound)
        # the hostile's reports were taken as they came and touch only its own connection
        assert bad.feedback["video"].remb in (0, 2**40)
        assert taken
        assert good.resource in media.viewers and hostile.resource in media.viewers
        async with relay.http.get(relay.base_url + "/api/health") as resp:
            assert resp.status == 200
        tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        assert not tracebacks, tracebacks[0].getMessage()
    finally:
        for v in (good, hostile, deaf):
            await v.stop()
        await pub.stop()
