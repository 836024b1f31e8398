"""The per-packet machinery alone: rewriting, keyframe gating, NACK cache, continuity."""

from __future__ import annotations

from itertools import pairwise

from media.forwarder import MAX_RESENDS_PER_NACK, RESEND_BURST, Downtrack, Forwarder
from media.keyframes import KeyframeRequester
from media.rtp import parse_extensions, parse_header, vp8_is_keyframe

KEY = bytes.fromhex("10502c019d012a") + b"k" * 20
DELTA = bytes.fromhex("10") + b"\x31" + b"d" * 20


class Wire:
    """Collects what a downtrack sends (SRTP protect is the identity here)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr) -> None:
        self.sent.append(data)

    def headers(self):
        return [parse_header(p) for p in self.sent]


def bound(ssrc: int, pt: int, ext=None) -> tuple[Downtrack, Wire]:
    dt = Downtrack(ssrc, pt, ext)
    wire = Wire()
    dt.bind(lambda b: b, wire.sendto, ("127.0.0.1", 9))
    return dt, wire


def test_each_viewer_gets_its_own_ssrc_pt_sequence_and_mid():
    fwd = Forwarder("audio", 48000)
    a, wa = bound(0x11111111, 111, [(4, b"0")])
    b, wb = bound(0x22222222, 109, [(9, b"a1")])
    fwd.add(a)
    fwd.add(b)
    for i in range(3):
        fwd.push(0xDEAD, 100 + i, 960 * i, 1, b"opus%d" % i)
    for wire, ssrc, pt, mid_id, mid in (
        (wa, 0x11111111, 111, 4, b"0"),
        (wb, 0x22222222, 109, 9, b"a1"),
    ):
        hdrs = wire.headers()
        assert [h[4] for h in hdrs] == [ssrc] * 3
        assert [h[1] for h in hdrs] == [pt] * 3
        seqs = [h[2] for h in hdrs]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
        assert [h[3] - hdrs[0][3] for h in hdrs] == [0, 960, 1920]
        assert parse_extensions(wire.sent[0]) == {mid_id: mid}
        payloads = [p[h[5] : h[6]] for p, h in zip(wire.sent, hdrs, strict=True)]
        assert payloads == [b"opus0", b"opus1", b"opus2"]


def test_video_viewer_starts_on_a_keyframe_and_one_request_goes_upstream():
    asked = []
    fwd = Forwarder("video", 90000, vp8_is_keyframe, KeyframeRequester(lambda: asked.append(1), 10))
    dt, wire = bound(7, 96)
    fwd.add(dt)
    dt2, _ = bound(8, 96)
    fwd.add(dt2)  # merged with the first request
    fwd.push(1, 10, 0, 1, DELTA)
    fwd.push(1, 11, 3000, 0, KEY)
    fwd.push(1, 12, 3000, 1, DELTA)
    assert len(asked) == 1 and fwd.keyframes.merged == 1
    assert [p[12:] for p in wire.sent] == [KEY, DELTA]
    seqs = [h[2] for h in wire.headers()]
    assert seqs[1] == (seqs[0] + 1) & 0xFFFF


def test_nack_is_answered_from_the_cache_with_the_viewers_rewrite():
    fwd = Forwarder("audio", 48000)
    dt, wire = bound(5, 111)
    fwd.add(dt)
    for i in range(5):
        fwd.push(1, 1000 + i, 960 * i, 0, b"p%d" % i)
    lost = parse_header(wire.sent[2])[2]
    assert fwd.retransmit(dt, [lost, (lost + 5000) & 0xFFFF]) == 1
    assert wire.sent[-1] == wire.sent[2]


def test_publisher_switch_keeps_sequence_and_timestamp_continuous():
    fwd = Forwarder("audio", 48000)
    dt, wire = bound(5, 111)
    fwd.add(dt)
    for i in range(3):
        fwd.push(0xAAAA, 40000 + i, 5_000_000 + 960 * i, 0, b"x")
    fwd.new_publisher()
    for i in range(3):
        fwd.push(0xBBBB, 7 + i, 123 + 960 * i, 0, b"y")
    hdrs = wire.headers()
    seqs = [h[2] for h in hdrs]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(6)]
    ts = [h[3] for h in hdrs]
    assert all(((b - a) & 0xFFFFFFFF) < 0x80000000 and b != a for a, b in pairwise(ts))


def test_a_failing_viewer_never_stops_the_others():
    fwd = Forwarder("audio", 48000)
    bad = Downtrack(1, 111)

    def boom(data, addr):
        raise OSError("gone")

    bad.bind(lambda b: b, boom, None)
    good, wire = bound(2, 111)
    fwd.add(bad)
    fwd.add(good)
    for i in range(4):
        fwd.push(9, i, i * 960, 0, b"z")
    assert len(wire.sent) == 4
    assert bad.errors == 4 and fwd.send_errors == 4


def test_audio_only_pause_and_resume_without_a_sequence_gap():
    fwd = Forwarder("video", 90000, vp8_is_keyframe, KeyframeRequester(lambda: None, 0))
    dt, wire = bound(3, 96)
    fwd.add(dt)
    fwd.push(1, 1, 0, 1, KEY)
    fwd.push(1, 2, 3000, 1, DELTA)
    fwd.pause(dt)
    fwd.push(1, 3, 6000, 1, DELTA)
    fwd.push(1, 4, 9000, 1, KEY)
    assert len(wire.sent) == 2
    fwd.resume(dt)
    fwd.push(1, 5, 12000, 1, DELTA)  # not a keyframe: held back
    fwd.push(1, 6, 15000, 1, KEY)
    seqs = [h[2] for h in wire.headers()]
    assert len(seqs) == 3 and seqs[2] == (seqs[1] + 1) & 0xFFFF


def test_keyframe_requests_are_merged_and_rate_limited():
    now = [0.0]
    sent = []
    req = KeyframeRequester(lambda: sent.append(now[0]), 0.5, clock=lambda: now[0])
    assert req.request()
    now[0] = 0.1
    assert not req.request() and req.pending
    now[0] = 0.3
    assert not req.tick()
    now[0] = 0.6
    assert req.tick() and sent == [0.0, 0.6]
    now[0] = 0.7
    req.request()
    req.on_keyframe()  # the keyframe came: nothing left to send
    now[0] = 2.0
    assert not req.tick() and len(sent) == 2


def video_forwarder() -> Forwarder:
    return Forwarder("video", 90000, vp8_is_keyframe, KeyframeRequester(lambda: None, 0.0))


def test_a_viewer_moved_to_another_layer_continues_its_numbering_and_timestamps():
    high, low = video_forwarder(), video_forwarder()
    dt, wire = bound(0x33333333, 96)
    high.add(dt)
    high.push(0xAAAA, 1000, 500_000, 1, KEY)
    high.push(0xAAAA, 1001, 503_000, 1, DELTA)
    low.push(0xBBBB, 7, 9_000_000, 1, KEY)  # another publisher's spaces entirely
    high.hand_over(dt, low)
    low.push(0xBBBB, 8, 9_003_000, 1, DELTA)  # not sent: the viewer waits for a keyframe
    low.push(0xBBBB, 9, 9_006_000, 1, KEY)
    low.push(0xBBBB, 10, 9_009_000, 1, DELTA)
    hdrs = wire.headers()
    assert [h[4] for h in hdrs] == [0x33333333] * 4
    seqs, stamps = [h[2] for h in hdrs], [h[3] for h in hdrs]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))  # no gap, no repeat
    assert 0 < (stamps[2] - stamps[1]) & 0xFFFFFFFF < 90000  # continues, a little later
    assert (stamps[3] - stamps[2]) & 0xFFFFFFFF == 3000  # then the low layer's own pace
    # a NACK for a packet sent before the move is not answered with the new layer's data,
    # nor counted as loss on the new layer (the viewer's receiver still asks after old gaps)
    assert low.retransmit(dt, [seqs[0], seqs[1]]) == 0 and dt.nacked == 0
    assert low.retransmit(dt, [seqs[3]]) == 1 and dt.nacked == 1


def test_a_nack_is_answered_for_a_bounded_number_of_packets_at_a_bounded_rate():
    fwd = Forwarder("audio", 48000)
    dt, wire = bound(0x44444444, 111)
    fwd.add(dt)
    for i in range(1000):
        fwd.push(0xDEAD, i, 960 * i, 0, b"x")
    seqs = [h[2] for h in wire.headers()]
    wire.sent.clear()
    # one NACK naming 1,000 packets, each of them twice
    assert fwd.retransmit(dt, seqs + seqs) == MAX_RESENDS_PER_NACK
    assert (
        len(wire.sent) == MAX_RESENDS_PER_NACK and dt.resends_refused == 1000 - MAX_RESENDS_PER_NACK
    )
    # NACK after NACK at once: the burst allowance runs out, then nothing more
    while fwd.retransmit(dt, seqs[:MAX_RESENDS_PER_NACK]):
        pass
    assert RESEND_BURST - 2 <= len(wire.sent) <= RESEND_BURST + 2
