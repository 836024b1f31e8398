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


@pytest.mark.netbed_profile("udp-blocked")
def test_a_phone_behind_a_udp_block_plays_through_turn_over_tcp(bed):
    """The phone's network passes TCP only (a company or hotel network): it plays through
    coturn over TCP, with a TURN credential of its own (LR_TURN_SECRET)."""
    url = bed.start_turn("netbed-turn-secret")
    bed.start_relay(LR_ICE_SERVERS=url, LR_TURN_SECRET="netbed-turn-secret")
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 40)
    got = result_of(bed.peer(bed.phone, "watch", sid, links["viewer_token"], 15), 90)
    assert got["status"] == 201, got
    assert got["pair"][:1] == ["relay"], got  # through TURN: nothing else gets out
    assert got["first_frame_s"] is not None and got["first_frame_s"] < 5, got
    assert got["video_frames"] > 100, got


@pytest.mark.netbed_profile("weak")
def test_a_weak_phone_keeps_its_sound(bed):
    """150 ms, 8% loss, 600 kbit/s: sound goes on in every second (the target is 99%). Whether
    the picture stops depends on what NACK repairs (with this aiortc lecturer, which sends no
    low copy, it stopped in some runs and not in others): measured, not asserted here."""
    bed.start_relay()
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 50)
    got = result_of(bed.peer(bed.phone, "watch", sid, links["viewer_token"], 30), 90)
    assert got["status"] == 201 and got["first_frame_s"] is not None, got
    audio = set(got["audio_seconds"])
    heard = range(int(got["first_frame_s"]) + 1, got["seconds"])
    assert sum(s in audio for s in heard) >= 0.97 * len(heard), got


@pytest.mark.netbed_profile("4g")
def test_a_chromium_phone_on_4g_plays_and_its_record_is_what_it_played(bed):
    """Real Chromium on the watch page, in the phone's namespace, with a member's link. The
    seconds its record credits are those its own getStats played, never more. A roll call
    (点名) 8 s in reaches it over the 4G link; its 到 is answered and counted."""
    bed.start_relay()
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 60)
    phone = bed.browser_phone(bed.member_url(sid), 25, rollcall=(8, links["lecturer_token"]))
    got = result_of(phone, 120)
    assert got["rollcall_shown_s"] is not None and got["rollcall_shown_s"] < 3, got
    assert got["rollcall_answered_s"] is not None and got["rollcall_answered_s"] < 5, got
    assert got["rollcalls"] and len(got["rollcalls"]) == 1, got  # counted by the relay
    assert got["first_frame_s"] is not None and got["first_frame_s"] < 5, got
    assert got["video_share"] >= 0.9 and got["sound_share"] >= 0.9, got
    played = got["played_to_last_beat_s"]
    assert played >= 15 and 0.9 * played <= got["credited_s"] <= played + 1, got


@pytest.mark.netbed_profile("handover")
def test_a_phone_whose_address_changes_plays_again_within_5_s(bed):
    """Wi-Fi to 4G: the phone's address changes, its old one dies. Chromium checks from the new
    one; the relay sends to whichever pair ICE nominated last (it sent to the first one for
    good, and the page rejoined after its 8 s stall timer: ~12 s). The record stays one
    member's, and credits no more than was played."""
    bed.start_relay()
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 60)
    got = result_of(bed.browser_phone(bed.member_url(sid), 25, handover_at=6), 120)
    assert got["recovery_s"] is not None and got["recovery_s"] <= 5, got
    assert got["credited_s"] <= got["played_to_last_beat_s"] + 1, got


@pytest.mark.netbed_profile("weak")
def test_a_weak_chromium_phone_is_told_when_its_picture_stops_and_gets_it_back(bed):
    """Chromium on the weak link, which recovers 20 s after the first frame. Where NACK
    repairs the loss the picture plays on the full lecture; where it does not, the relay
    moves the phone to sound only and the page says so: the picture never stands still
    for more than 5 s with the page still claiming video. Once the link recovered, the
    full lecture and a moving picture are back within 18 s: on sound only the relay hears
    from the phone every 2.5-7.5 s, the report that straddles the recovery arrives at most
    7.5 s after it, the step up comes 8 s after that report, then a keyframe (10 s measured
    twice; on CI the picture was not back 15.7 s after, when the relay waited for the
    report after those 8 s). The phone watches ~25 s past the recovery, so that a late
    return is a number, not None."""
    bed.start_relay()
    links = bed.session()
    sid = links["session_id"]
    bed.peer(bed.srv, "publish", sid, links["lecturer_token"], 90)
    got = result_of(bed.browser_phone(bed.member_url(sid), 55, recover_at=20), 170)
    assert got["first_frame_s"] is not None and got["sound_share"] >= 0.97, got
    assert got["unexplained_freeze_s"] <= 5, got
    assert got["video_back_s"] is not None and got["video_back_s"] <= 18, got
    assert got["high_back_s"] is not None and got["high_back_s"] <= 18, got
    assert got["layers"][-1][1] == "high", got
