"""A standard WHEP player sends none of our heartbeats (issue 30): it watches to the end of
the lecture, and its record rests on the relay's evidence alone and says so."""

from __future__ import annotations

import pytest

from server.attendance.exports import audit_summary, export_row
from tests.client import watch
from tests.test_attendance import joined, lecture, next_report, report
from tests.waiting import until


@pytest.mark.relay_config(heartbeat_timeout_s=1.5, heartbeat_interval_s=0.5)
async def test_a_viewer_without_heartbeats_keeps_watching_and_its_record_says_why(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await lecture(relay, links)
    player = await watch(relay.http, relay.base_url, sid, relay.token("member", sid, "W1"))
    page = await watch(relay.http, relay.base_url, sid, relay.token("member", sid, "W2"))
    try:
        rid = await joined(relay, player)
        await joined(relay, page)
        await next_report(relay, sid, page)
        assert (await page.heartbeat(relay.http))[0] == 200  # our page, then silent
        media = relay.state.live.find(sid)
        # our silent page is ended; the standard player, after twice the timeout, is not
        await until(lambda: page.resource not in media.viewers, timeout=10)
        ledger = relay.state.attendance.ledger

        def seen() -> int:
            return sum(1 for r in ledger.rows(sid) if r.kind == "seen" and r.data["peer"] == rid)

        await until(lambda: seen() >= 6, timeout=15, what="no relay evidence recorded")
        assert rid in media.viewers
        frames = player.stats["video"].frames
        await player.wait_frames("video", frames + 10, timeout=10)  # media still flows
        leaves = [r.data for r in ledger.rows(sid) if r.kind == "leave"]
        assert leaves == [{"peer": page.resource, "reason": "heartbeat_timeout"}]
        await relay.state.attendance.drain()
        rep = report(relay, sid)
        them = rep.participants["member:W1"]
        assert them.seconds_watched == 0 and not them.credited  # no page said it was watched
        assert them.relay_only_seconds >= 2
        row = export_row(them)
        assert row["relay_only_seconds"] >= 2 and row["seconds_watched"] == 0
        assert audit_summary(rep, {}, {})["relay_only_participants"] == 1
        assert rep.participants["member:W2"].relay_only_seconds == 0
    finally:
        await player.stop(relay.http)
        await page.stop(relay.http)
        await pub.stop()
