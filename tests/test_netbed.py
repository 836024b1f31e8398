"""Phones on an impaired link, not loopback (issue 25): the relay in one network namespace,
a phone in another, one 1500-byte-MTU link between them with a profile's delay, jitter, loss
and rate (scripts/netbed.py). Real processes, real aiortc peers."""

from __future__ import annotations

import pytest

from tests.netbed import needs_bed, result_of

pytestmark = needs_bed


@pytest.mark.netbed_profile("4g")
def test_a_4g_phone_plays_the_lecture(bed):
    """50 ms +-10 each way, 3% loss, 2.5 Mbit/s. Its offer crosses a 1500-byte MTU in several
    segments (the relay read the first of them alone before it read bodies whole)."""
    bed.start_relay()
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 40)
    got = result_of(bed.peer(bed.phone, "watch", sid, links["viewer_token"], 20), 90)
    assert got["status"] == 201, got
    assert got["first_frame_s"] is not None and got["first_frame_s"] < 5, got
    playing = got["seconds"] - int(got["first_frame_s"]) - 1
    assert got["seconds_with_video"] >= 0.9 * playing, got
