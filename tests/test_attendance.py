"""Attendance end to end: real aiortc viewers, their receiver reports and their heartbeats."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from media.logtag import log_tag
from server.attendance.events import Headcount, Question
from server.attendance.report import build_report
from server.attendance.writer import EventRefused
from server.histogram import LATENCY_BOUNDS
from server.store import Member
from tests.calls import call
from tests.client import Viewing, publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_workers import metrics
from tests.waiting import until


async def lecture(relay, links):
    return await publish(
        relay.http,
        relay.base_url,
        links["session_id"],
        links["lecturer_token"],
        [ToneAudioTrack(), PatternVideoTrack()],
    )


def server_viewer(relay, sid, viewing):
    return relay.state.live.find(sid).viewers[viewing.resource]


async def next_report(relay, sid, viewing, timeout=5.0):
    """Wait until the relay holds receiver reports from this viewer, for every track, that are
    newer than now (audio and video report on their own schedules)."""
    tracks = [dt for _, dt in server_viewer(relay, sid, viewing).tracks.values()]
    seen = [dt.rr[4] if dt.rr else None for dt in tracks]
    await until(
        lambda: all(
            dt.rr is not None and dt.rr[4] != s for dt, s in zip(tracks, seen, strict=True)
        ),
        timeout,
        what="no receiver report from the viewer",
    )


async def joined(relay, viewing, timeout=10.0):
    rid = viewing.resource
    await until(
        lambda: rid in relay.state.attendance.peers, timeout, 0.02, "the viewer never joined"
    )
    return rid


@dataclass
class Watching:
    links: dict  # the session's, as relay.new_session made them
    sid: str
    viewer: Viewing
    rid: str  # its connection (the WHEP resource)


@asynccontextmanager
async def one_watching(relay, who: str):
    """A new session, its lecture, and one participant watching it once joined: ``who`` is
    "member:<id>" or "room:<index in the session's rooms>". Both end afterwards (a viewer
    that has already left gets a DELETE it answers 404)."""
    links = relay.new_session()
    sid = links["session_id"]
    kind, _, ident = who.partition(":")
    if kind == "member":
        token = relay.token("member", sid, ident)
    else:
        token = links["rooms"][int(ident)]["token"]
    async with watching_in(relay, links, token) as watching:
        yield watching


@asynccontextmanager
async def watching_in(relay, links: dict, token: str):
    """The lecture of ``links`` going, and one viewer with ``token`` watching it, joined
    (media reached it) and decoding; both end afterwards."""
    sid = links["session_id"]
    pub = await lecture(relay, links)
    try:
        viewer = await watch(relay.http, relay.base_url, sid, token)
        try:
            rid = await joined(relay, viewer)
            await viewer.wait_frames("video", 5, timeout=15)
            yield Watching(links, sid, viewer, rid)
        finally:
            await viewer.stop(relay.http)
    finally:
        await pub.stop()


def report(relay, sid):
    return build_report(sid, list(relay.state.attendance.ledger.rows(sid)))


async def test_reconnecting_member_is_one_participant_with_two_intervals(relay, tmp_path):
    links = relay.new_session()
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("M001", "张三", "团堡镇", "13800000001", "mobile")])
    member = relay.token("member", sid, "M001")
    pub = await lecture(relay, links)
    try:
        for _ in range(2):  # watch, leave, come back
            v = await watch(relay.http, relay.base_url, sid, member)
            await joined(relay, v)
            await v.wait_frames("video", 5, timeout=15)
            for _ in range(2):
                await next_report(relay, sid, v)
                status, body = await v.heartbeat(relay.http)
                assert status == 200 and body["seq"] > 0
            await v.stop(relay.http)
        status, body = await call(
            relay, "POST", f"/api/sessions/{sid}/end", links["lecturer_token"]
        )
        assert status == 200 and body["receipt"]["final"] is True
    finally:
        await pub.stop()

    admin = relay.token("admin", None)
    status, doc = await call(relay, "GET", f"/api/sessions/{sid}/attendance?format=json", admin)
    assert status == 200
    (row,) = [p for p in doc["participants"] if p["participant"] == "member:M001"]
    assert row["name"] == "张三" and row["place"] == "团堡镇"
    assert len(row["intervals"]) == 2 and row["reconnects"] == 1
    assert row["seconds_watched"] >= 1
    kinds = [e["kind"] for e in doc["events"]]
    assert kinds[0] == "start" and kinds.count("join") == 2 and kinds.count("leave") == 2
    assert "end" in kinds and kinds[-1] == "export"
    # the file's own reading is signed in it: nothing in it rests on the chain alone
    assert max(c["seq"] for c in doc["checkpoints"]) == doc["events"][-1]["seq"]
    leaves = [e["data"]["reason"] for e in doc["events"] if e["kind"] == "leave"]
    assert leaves == ["delete", "delete"]
    status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
    assert status == 200 and verdict["ok"] and verdict["checkpoints"] >= 1


async def test_a_viewer_joins_when_the_lectures_media_reaches_it_not_before(relay):
    """A member connected before the lecture begins, or while the lecturer has paused, joins
    when media starts flowing; one who leaves before then was never present."""
    links = relay.new_session()
    sid = links["session_id"]

    def member(mid: str) -> str:
        return relay.token("member", sid, mid)

    def connected(viewing) -> bool:
        viewer = relay.state.live.find(sid).viewers.get(viewing.resource)
        return viewer is not None and viewer.connected.is_set()

    early = await watch(relay.http, relay.base_url, sid, member("E001"))
    gone = await watch(relay.http, relay.base_url, sid, member("E002"))
    late = None
    await until(lambda: connected(early) and connected(gone), 15, what="no connection")
    assert relay.state.attendance.peers == {}  # connected, and nothing to watch yet
    await gone.stop(relay.http)
    pub = await lecture(relay, links)
    try:
        await joined(relay, early)
        await relay.state.attendance.drain()
        rows = list(relay.state.attendance.ledger.rows(sid))
        (start,) = [r for r in rows if r.kind == "start"]
        (join,) = [r for r in rows if r.kind == "join"]
        assert join.data["participant"] == "member:E001" and join.at_ms >= start.at_ms
        assert not [r for r in rows if r.kind == "leave"]  # E002 neither came nor went
        # the lecturer pauses: one who connects meanwhile waits for the media again
        await pub.stop()
        media = relay.state.live.find(sid)
        await until(lambda: not media.media_flowing.is_set(), 10, what="media still flowing")
        late = await watch(relay.http, relay.base_url, sid, member("E003"))
        await until(lambda: connected(late), 15, what="no connection")
        late_id = late.resource
        assert late_id not in relay.state.attendance.peers
        pub = await lecture(relay, links)
        assert await joined(relay, late) == late_id
    finally:
        await pub.stop()
        for viewing in (early, late):
            if viewing is not None:
                await viewing.stop(relay.http)
    await relay.state.attendance.drain()
    rows = list(relay.state.attendance.ledger.rows(sid))
    assert [r.data["participant"] for r in rows if r.kind == "join"] == [
        "member:E001",
        "member:E003",
    ]


async def test_page_claiming_playback_after_its_media_was_cut_earns_nothing(relay):
    async with one_watching(relay, "member:M002") as w:
        sid, v, rid = w.sid, w.viewer, w.rid
        await v.wait_frames("video", 5, timeout=15)
        await next_report(relay, sid, v)
        assert (await v.heartbeat(relay.http))[0] == 200
        before = report(relay, sid).participants["member:M002"]
        assert before.seconds_watched > 0

        # cut: the viewer's transport drops every packet before its receiver sees it
        dtls = v.pc.getTransceivers()[0].receiver.transport

        async def drop(data: bytes, arrival_time_ms: int) -> None:
            return None

        dtls._handle_rtp_data = drop
        await next_report(relay, sid, v)  # may still carry packets from before the cut
        frames = v.stats["video"].frames
        await v.heartbeat(relay.http, frames + 100, True)
        await next_report(relay, sid, v)
        await v.heartbeat(relay.http, frames + 200, True)  # the page lies: "still playing"
        after = report(relay, sid).participants["member:M002"]
        assert after.unverified_s > 0
        rows = [r for r in relay.state.attendance.ledger.rows(sid) if r.kind == "heartbeat"]
        assert rows[-1].data["peer"] == rid
        assert rows[-1].data["video_rr"] == rows[-2].data["video_rr"]
        last_span = (rows[-1].at_ms - rows[-2].at_ms) / 1000
        # the heartbeat just after the cut may still count (its reports can carry packets
        # from before the cut); the one after that may not
        assert after.seconds_watched <= before.seconds_watched + (
            (rows[-2].at_ms - rows[-3].at_ms) / 1000 + 0.01
        )
        assert after.unverified_s >= last_span - 0.01


async def test_room_checkins_are_credited_from_the_rooms_watched_time(relay):
    store = relay.state.store
    store.upsert_members([Member("M010", "李四", "团堡镇"), Member("M011", "王五", "团堡镇")])
    async with one_watching(relay, "room:8") as w:
        sid, v, room = w.sid, w.viewer, w.links["rooms"][8]
        await v.wait_frames("video", 5, timeout=15)
        status, _ = await call(
            relay, "POST", f"/api/sessions/{sid}/headcount", room["token"], {"count": 1}
        )
        assert status == 200
        status, body = await call(
            relay, "POST", f"/api/sessions/{sid}/checkin", room["token"], {"member_id": "M010"}
        )
        assert status == 200 and body["name"] == "李四"
        head = relay.state.attendance.ledger.head(sid)
        status, body = await call(
            relay, "POST", f"/api/sessions/{sid}/checkin", room["token"], {"member_id": "X9"}
        )
        assert status == 404 and "roster" in body["error"]
        assert relay.state.attendance.ledger.head(sid) == head  # nothing recorded
        for _ in range(2):
            await next_report(relay, sid, v)
            assert (await v.heartbeat(relay.http))[0] == 200
    rep = report(relay, sid)
    member = rep.participants["member:M010"]
    room_rep = rep.participants[f"room:{room['code']}"]
    assert member.via_room == room["code"] or member.via_room == room["name"]
    assert 0 < member.seconds_watched <= room_rep.seconds_watched
    assert "member:M011" not in rep.participants
    assert rep.headcounts == {room["code"]: 1}


async def test_a_room_finds_members_of_its_own_township_by_name_to_check_them_in(relay):
    """A member who does not know their member id is found by name (or the id's start) in
    the classroom's township roster: names and ids only, that township only, a bounded list;
    other roles and bad queries are refused."""
    store = relay.state.store
    store.upsert_members(
        [
            Member("TB001", "张三", "团堡镇", "13800000001"),
            Member("TB002", "张三丰", "团堡镇", "13800000002"),
            Member("TB003", "李_四", "团堡镇"),
            Member("MD001", "张三", "谋道镇"),
            *(Member(f"TB1{i:02d}", f"王{i}", "团堡镇") for i in range(25)),
        ]
    )
    links = relay.new_session()
    sid = links["session_id"]
    room = next(r for r in links["rooms"] if r["name"] == "团堡镇")
    path = f"/api/sessions/{sid}/roster?q="

    status, body = await call(relay, "GET", path + "张三", room["token"])
    assert status == 200 and body["township"] == "团堡镇" and body["more"] is False
    assert body["members"] == [
        {"member_id": "TB001", "name": "张三"},
        {"member_id": "TB002", "name": "张三丰"},
    ]  # not 谋道镇's 张三, and no phone numbers
    status, body = await call(relay, "GET", path + "tb00", room["token"])
    assert [m["member_id"] for m in body["members"]] == ["TB001", "TB002", "TB003"]
    status, body = await call(relay, "GET", path + "_", room["token"])  # taken literally
    assert [m["name"] for m in body["members"]] == ["李_四"]
    status, body = await call(relay, "GET", path + "王", room["token"])
    assert len(body["members"]) == 20 and body["more"] is True

    # what the page does with a match: the check-in it records
    status, body = await call(
        relay, "POST", f"/api/sessions/{sid}/checkin", room["token"], {"member_id": "TB002"}
    )
    assert status == 200 and body["name"] == "张三丰"

    member = relay.token("member", sid, "TB001")
    other = relay.new_session("另一讲座")["rooms"][8]["token"]
    for token, query, expected in (
        (room["token"], "", 400),
        (room["token"], "x" * 33, 400),
        (member, "张三", 403),
        (other, "张三", 403),
        (None, "张三", 401),
    ):
        status, body = await call(relay, "GET", path + query, token)
        assert status == expected and body["error"], (query, status, body)
    kinds = [r.kind for r in relay.state.attendance.ledger.rows(sid)]
    assert kinds == ["checkin"]  # a search records nothing


async def test_a_room_reads_back_its_own_check_ins_after_a_reload(relay):
    """The room page lists its check-ins again after a reload: each member once, in the
    order of their first check-in, with names; another classroom sees only its own."""
    relay.state.store.upsert_members(
        [Member("TB001", "张三", "团堡镇"), Member("TB002", "李四", "团堡镇")]
    )
    links = relay.new_session()
    sid = links["session_id"]
    here, there = links["rooms"][8]["token"], links["rooms"][2]["token"]
    for member in ("TB002", "TB001", "TB002"):
        status, _ = await call(
            relay, "POST", f"/api/sessions/{sid}/checkin", here, {"member_id": member}
        )
        assert status == 200
    path = f"/api/sessions/{sid}/checkins"
    status, body = await call(relay, "GET", path, here)
    assert status == 200 and body["checkins"] == [
        {"member_id": "TB002", "name": "李四"},
        {"member_id": "TB001", "name": "张三"},
    ]
    assert (await call(relay, "GET", path, there)) == (200, {"checkins": []})
    status, body = await call(relay, "GET", path, relay.token("member", sid, "TB001"))
    assert status == 403 and body["error"]


async def test_metrics_show_how_long_appends_waited_to_be_durable(relay):
    """``/metrics`` has, as Prometheus histograms, each append's wait until it was on disk and
    each batch's time in the ledger writer: how an operator sees a disk keeping heartbeats
    waiting."""
    async with one_watching(relay, "member:M1") as w:
        await relay.state.attendance.drain()
        before = await metrics(relay.http, relay.base_url)
        for _ in range(3):
            assert (await w.viewer.heartbeat(relay.http))[0] == 200  # answered once durable
        after = await metrics(relay.http, relay.base_url)

    def grew(name: str) -> float:
        return after[name] - before.get(name, 0)

    durable, written = "lr_ledger_durable_seconds", "lr_ledger_write_seconds"
    assert grew(f"{durable}_count") >= 3 and grew(f"{durable}_sum") > 0
    assert grew(f"{durable}_count") == grew("lr_ledger_events_total")  # each append, once
    assert grew(f"{written}_count") == grew("lr_ledger_commits_total") >= 1
    for name in (durable, written):
        buckets = [v for k, v in after.items() if k.startswith(f"{name}_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == after[f"{name}_count"]
        assert f'{name}_bucket{{le="0.05"}}' in after  # the heartbeat target is a bound
    assert after["lr_ledger_pending"] == 0

    async def lag_sampled() -> bool:
        return (await metrics(relay.http, relay.base_url))["lr_event_loop_lag_seconds_count"] > 0

    await until(lag_sampled, timeout=5)  # how late the loop runs, every 0.1 s

    # the admin page's line: the same numbers, for an admin without a metrics system
    status, view = await call(relay, "GET", "/api/admin/cluster", relay.token("admin", None))
    ledger = view["ledger"]
    assert status == 200 and ledger["events"] >= after["lr_ledger_events_total"]
    bounds = {round(b * 1000, 3) for b in LATENCY_BOUNDS} | {None}  # None: past the last
    assert ledger["pending"] == 0 and ledger["durable_p99_ms"] in bounds
    assert ledger["write_p99_ms"] in bounds
    member = relay.token("member", w.sid, "M1")
    assert (await call(relay, "GET", "/api/admin/cluster", member))[0] == 403


async def test_no_token_or_phone_number_reaches_a_log_line(relay, caplog):
    """Every logger at every level, through a member's whole visit and the refusals around
    it: the tokens and the phone number appear in no log line (the admin's export, asked with
    phones, has the number)."""
    caplog.set_level(logging.DEBUG)
    links = relay.new_session()
    sid = links["session_id"]
    phone = "13912345678"
    relay.state.store.upsert_members([Member("M042", "李四", "团堡镇", phone, "elderly")])
    member = relay.token("member", sid, "M042")
    expired = relay.token("member", sid, "M042", ttl=-1)
    admin = relay.token("admin", None)
    pub = await lecture(relay, links)
    try:
        async with relay.http.get(links["urls"]["watch"]) as resp:  # a page, its token in the query
            assert resp.status == 200
        v = await watch(relay.http, relay.base_url, sid, member)
        await joined(relay, v)
        await next_report(relay, sid, v)
        assert (await v.heartbeat(relay.http))[0] == 200
        ws = await v.heartbeat_socket(relay.http, token_in_header=False)  # the token as a message
        await ws.send_json({"frames_decoded": 1, "audio_playing": True, "visible": True})
        assert "seq" in await ws.receive_json()
        await ws.close()
        beat = {"frames_decoded": 2, "audio_playing": True, "visible": True}
        assert (await call(relay, "POST", f"{v.location}/heartbeat", expired, beat))[0] == 401
        assert (await call(relay, "GET", f"/api/sessions/{sid}/me", member[:-2] + "xx"))[0] == 401
        async with relay.http.post(
            f"{relay.base_url}/whep/{sid}",
            data="v=0 not an offer",
            headers={"Authorization": f"Bearer {member}", "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 400
        await v.stop(relay.http)
        status, doc = await call(
            relay, "GET", f"/api/sessions/{sid}/attendance?format=json&phones=1", admin
        )
        assert status == 200 and phone in json.dumps(doc)
    finally:
        await pub.stop()
    logged = caplog.text
    rid = v.location.rsplit("/", 1)[1]
    assert f"peer={log_tag(rid)}" in logged  # the visit was logged, by a digest of its id
    tokens = [member, expired, admin, links["lecturer_token"], links["viewer_token"]]
    # signatures alone too; the resource id is a capability (its DELETE) and stays out
    secrets = [phone, rid, *tokens, *(t.rsplit(".", 1)[-1] for t in tokens)]
    assert [s for s in secrets if s in logged] == []


async def test_heartbeat_and_export_refusals_leave_the_ledger_consistent(relay):
    links = relay.new_session()
    sid = links["session_id"]
    pub = await lecture(relay, links)
    a = relay.token("member", sid, "A")
    b = relay.token("member", sid, "B")
    va = await watch(relay.http, relay.base_url, sid, a)
    vb = await watch(relay.http, relay.base_url, sid, a)  # the same member on a second device
    try:
        await joined(relay, va)
        await joined(relay, vb)
        await relay.state.attendance.drain()  # the joins handed to the ledger are on disk
        head = relay.state.attendance.ledger.head(sid)
        path = f"{va.location}/heartbeat"
        body = {"frames_decoded": 1, "audio_playing": True, "visible": True}
        assert (await call(relay, "POST", path, b, body))[0] == 403  # someone else's connection
        expired = relay.token("member", sid, "A", ttl=-1)
        assert (await call(relay, "POST", path, expired, body))[0] == 401
        status, err = await call(relay, "POST", path, a, {"frames_decoded": -3})
        assert status == 400 and "frames_decoded" in err["error"]
        status, err = await call(relay, "POST", path.replace(va.location, "/whep/x/y"), a, body)
        assert status == 403  # a token of this session is no key to another
        assert relay.state.attendance.ledger.head(sid) == head
        status, _ = await call(relay, "GET", f"/api/sessions/{sid}/attendance", a)
        assert status == 403
        status, _ = await call(
            relay, "GET", f"/api/sessions/{sid}/attendance?format=pdf", relay.token("admin", None)
        )
        assert status == 400
        # the duplicate join: both connections count for one participant
        await next_report(relay, sid, va)
        await va.heartbeat(relay.http)
        await next_report(relay, sid, vb)
        await vb.heartbeat(relay.http)
        rep = report(relay, sid)
        assert set(rep.participants) == {"member:A"}
        assert rep.participants["member:A"].joins == 2
    finally:
        await va.stop(relay.http)
        await vb.stop(relay.http)
        await pub.stop()


@pytest.mark.relay_config(heartbeat_timeout_s=1.5)
async def test_a_viewer_whose_page_falls_silent_is_ended_for_heartbeat_timeout(relay):
    async with one_watching(relay, "member:S1") as w:
        sid, rid = w.sid, w.rid
        media = relay.state.live.find(sid)
        await next_report(relay, sid, w.viewer)
        assert (await w.viewer.heartbeat(relay.http))[0] == 200  # a page of ours: it spoke
        await until(lambda: rid not in media.viewers, timeout=15)  # then no heartbeat
        await relay.state.attendance.drain()
        leaves = [r.data for r in relay.state.attendance.ledger.rows(sid) if r.kind == "leave"]
        assert leaves == [{"peer": rid, "reason": "heartbeat_timeout"}]


async def test_a_vanished_viewer_leaves_with_reason_ice_failure(relay):
    async with one_watching(relay, "member:S2") as w:
        sid, rid = w.sid, w.rid
        await w.viewer.pc.close()  # the phone lost its network: no DELETE
        media = relay.state.live.find(sid)
        await until(lambda: rid not in media.viewers, timeout=40)  # reaped by ICE consent
        await relay.state.attendance.drain()
        leaves = [r.data for r in relay.state.attendance.ledger.rows(sid) if r.kind == "leave"]
        assert leaves == [{"peer": rid, "reason": "ice_failure"}]


async def test_a_heartbeat_socket_ends_with_its_viewer_connection(relay):
    """No WebSocket pings: a page's socket lives as long as its connection, and is closed
    (1001, going away) when the connection ends, here by its DELETE."""
    async with one_watching(relay, "member:A") as w:
        sid, va, rid = w.sid, w.viewer, w.rid
        await next_report(relay, sid, va)
        ws = await va.heartbeat_socket(relay.http, token_in_header=True)
        await ws.send_json(va.playback())
        assert "seq" in await ws.receive_json()
        assert rid in relay.state.heartbeat_sockets
        await va.stop(relay.http)
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type.name == "CLOSE" and closing.data == 1001
        assert rid not in relay.state.heartbeat_sockets
        await ws.close()


@pytest.mark.relay_config(heartbeat_min_gap_s=30)
async def test_a_page_cannot_record_heartbeats_faster_than_the_least_gap(relay):
    """Each heartbeat is a ledger event: one sooner than the least gap after the connection's
    last is refused (429, over POST and the socket alike), records nothing, and leaves the
    socket open."""
    async with one_watching(relay, "member:A") as w:
        sid, va = w.sid, w.viewer
        await next_report(relay, sid, va)
        status, first = await va.heartbeat(relay.http)
        assert status == 200
        ledger = relay.state.attendance.ledger
        await relay.state.attendance.drain()
        head = ledger.head(sid)
        status, body = await va.heartbeat(relay.http)
        assert status == 429 and body["error"] == "one heartbeat every 30 s at most"
        ws = await va.heartbeat_socket(relay.http, token_in_header=True)
        try:
            for _ in range(2):
                await ws.send_json(va.playback())
                assert await ws.receive_json() == {
                    "error": "one heartbeat every 30 s at most",
                    "status": 429,
                }
        finally:
            await ws.close()
        await relay.state.attendance.drain()
        assert ledger.head(sid) == head == (first["seq"], head[1])


async def test_stopping_the_relay_ends_its_heartbeat_sockets_first(relay):
    """aiohttp waits for every handler still running when it stops, and an open socket's
    runs until its page goes: the relay ends them (1001) as it begins to stop."""
    async with one_watching(relay, "member:A") as w:
        await next_report(relay, w.sid, w.viewer)
        ws = await w.viewer.heartbeat_socket(relay.http, token_in_header=True)
        await ws.send_json(w.viewer.playback())
        assert "seq" in await ws.receive_json()
        closing = asyncio.ensure_future(ws.receive())
        await relay.app.shutdown()  # what stopping the server does first (on_shutdown)
        message = await asyncio.wait_for(closing, 10)
        assert message.type.name == "CLOSE" and message.data == 1001
        assert message.extra == "the relay is stopping"
        await ws.close()
        await until(lambda: relay.state.heartbeat_sockets_open == 0)  # its handler ended


async def test_heartbeats_over_a_websocket_are_recorded_like_posts_and_refused_alike(relay):
    """The page's WebSocket carries the same heartbeats as the POST route, each answered once
    durable; a wrong token or someone else's connection ends it and records nothing."""
    async with one_watching(relay, "member:A") as w:
        sid, va, rid = w.sid, w.viewer, w.rid
        a, b = va.token, relay.token("member", sid, "B")
        await next_report(relay, sid, va)
        await va.wait_frames("video", 5)
        ledger = relay.state.attendance.ledger
        await relay.state.attendance.drain()  # the join handed to the ledger is on disk
        head = ledger.head(sid)
        url = f"{va.resource_url}/heartbeats"

        # refusals: each a clear reason, and nothing in the ledger
        async with relay.http.ws_connect(url) as ws:  # a browser: the token comes first
            await ws.send_json({"token": b})
            assert await ws.receive_json() == {
                "error": "this connection belongs to someone else",
                "status": 403,
            }
            assert (await ws.receive()).type.name in ("CLOSE", "CLOSED")
        async with relay.http.ws_connect(url) as ws:
            await ws.send_json({"frames_decoded": 1})  # no token first
            assert (await ws.receive_json())["status"] == 401
        async with relay.http.get(
            url.replace(rid, "nosuchconnection"), headers={"Authorization": f"Bearer {a}"}
        ) as resp:
            assert resp.status == 404 and "error" in await resp.json()
        async with relay.http.get(url, headers={"Authorization": "Bearer forged.token"}) as resp:
            assert resp.status == 401
        assert ledger.head(sid) == head

        # the member's own page: token as the first message, then heartbeats
        ws = await va.heartbeat_socket(relay.http, token_in_header=False)
        try:
            await ws.send_json({"frames_decoded": -1, "audio_playing": True, "visible": True})
            bad = await ws.receive_json()
            assert bad["status"] == 400 and "frames_decoded" in bad["error"]
            for played in (-5, "x", True, 3_600_001, 1.5):  # what the page played: optional
                await ws.send_json({**va.playback(), "played_ms": played})
                bad = await ws.receive_json()
                assert bad["status"] == 400 and "played_ms" in bad["error"], played
            seqs = []
            for played in (None, 4321, 0):
                await ws.send_json({**va.playback(), "played_ms": played})
                answer = await ws.receive_json()
                assert answer["layer"] == "high"
                seqs.append(answer["seq"])
        finally:
            await ws.close()
        rows = {r.seq: r for r in ledger.rows(sid)}
        assert [rows[s].data["played_ms"] for s in seqs] == [-1, 4321, 0]
        assert seqs == sorted(seqs) and all(rows[s].kind == "heartbeat" for s in seqs)
        assert all(rows[s].data["peer"] == rid for s in seqs)
        # a POST heartbeat continues the same chain
        status, body = await va.heartbeat(relay.http)
        assert status == 200 and body["seq"] == seqs[-1] + 1


@pytest.mark.relay_config(checkpoint_interval_s=0.1)
async def test_a_live_sessions_report_is_kept_up_to_date_in_the_background(relay):
    """Folds follow the ledger as the server appends; what they cannot follow (here an event
    appended before, as by the CLI or a server before a restart) the background refresh
    reads in, every checkpoint interval."""
    from media.session import MediaEvent
    from server.attendance.events import Headcount

    state = relay.state
    sid = state.store.create_session("直播").id
    state.attendance.ledger.append_now(sid, Headcount("11112222", 3))  # not followed
    state.attendance.on_media_event(MediaEvent("publisher_connected", sid, "pub"))
    await state.attendance.drain()
    head, _ = state.attendance.ledger.head(sid)
    assert head == 2  # headcount, start
    await until(lambda: state.reports.folded(sid) >= head)  # no report was asked for
    # and a report asked for now starts from that fold
    assert state.reports.report(sid).headcounts == {"11112222": 3}
    await state.attendance.append(sid, Headcount("11112222", 4))
    assert state.reports.folded(sid) == head + 1  # followed as it was appended


@pytest.mark.relay_config(checkpoint_interval_s=0.2)
async def test_events_after_the_lecture_are_signed_so_cutting_them_off_is_caught(relay):
    """Audits are read, and replays watched, after the lecture, past its final receipt. The
    chain alone cannot show its last events cut off (who read personal data), so they are
    signed at the next checkpoint tick, as a live session's are."""
    from server.attendance.events import Export
    from tests.test_ledger import tamper

    links = relay.new_session()
    sid = links["session_id"]
    admin = relay.token("admin", None)
    att = relay.state.attendance
    pub = await lecture(relay, links)
    try:
        await until(lambda: sid in att.live_sessions(), 15, what="the lecture never started")
    finally:
        await pub.stop()
    assert (await call(relay, "POST", f"/api/sessions/{sid}/end", admin, {}))[0] == 200
    final = att.final_receipt(sid)["seq"]
    # the audit page names absentees: its reading is an export event, signed at once
    status, page = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
    assert status == 200 and page["verify"]["ok"] and page["verify"]["unsigned"] == 0
    read = max(r.seq for r in att.ledger.rows(sid))
    assert read > final and max(c.seq for c in att.all_checkpoints(sid)) == read
    # any other event after the lecture is signed at the next tick
    await att.append(sid, Export("admin", "csv", False))
    export = read + 1
    await until(
        lambda: max(c.seq for c in att.all_checkpoints(sid)) >= export,
        5,
        what="the export after the lecture was never signed",
    )
    assert att.final_receipt(sid)["seq"] == final  # still the lecture's receipt
    status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
    assert verdict["ok"] and verdict["unsigned"] == 0
    tamper(att.ledger.path, ("DELETE FROM events WHERE session = ? AND seq = ?", (sid, export)))
    status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
    assert status == 200 and not verdict["ok"] and verdict["first_bad_seq"] == export


@pytest.mark.relay_config(ledger_commit_interval_s=0.5)
async def test_one_unwritable_event_fails_no_other_sessions_attendance(relay):
    """Headcounts from two sessions' rooms share a commit with an event that cannot be
    written (a lone surrogate, put below the edge; the edge itself answers such a question
    400): every headcount is acknowledged and in its session's verified chain, the bad
    event alone is refused."""
    state = relay.state
    ledger = state.attendance.ledger
    a, b = relay.new_session("甲"), relay.new_session("乙")
    await state.attendance.append(a["session_id"], Headcount("warm-up", 0))
    # the next commit starts 0.5 s after that one: what comes meanwhile shares it
    bad = ledger.submit(a["session_id"], Question(1, "member:1", "\ud800"))
    counts = [
        call(
            relay,
            "POST",
            f"/api/sessions/{links['session_id']}/headcount",
            r["token"],
            {"count": n},
        )
        for links in (a, b)
        for n, r in enumerate(links["rooms"][:6], start=1)
    ]
    edge = call(
        relay,
        "POST",
        f"/api/sessions/{a['session_id']}/questions",
        relay.token("member", a["session_id"], "M1"),
        data=b'{"text": "\\ud800"}',
        ctype="application/json",
    )
    *answers, (edge_status, edge_body) = await asyncio.gather(*counts, edge)
    assert [s for s, _ in answers] == [200] * 12, answers
    assert edge_status == 400 and "surrogate" in edge_body["error"]
    with pytest.raises(EventRefused, match="not valid Unicode"):
        await bad
    assert ledger.batches <= 3  # warm-up, then the headcounts (bar a late one) with the bad one
    admin = relay.token("admin", None)
    for links, warm in ((a, 1), (b, 0)):
        sid = links["session_id"]
        codes = {r["code"] for r in links["rooms"]}
        acked = {body["seq"] for _, body in answers if body["room"] in codes}
        rows = list(ledger.rows(sid))
        assert [r.kind for r in rows] == ["headcount"] * (6 + warm)
        assert acked == {r.seq for r in rows} - ({1} if warm else set())
        status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
        assert status == 200 and verdict["ok"] and verdict["events"] == 6 + warm


async def test_a_room_checks_in_only_its_own_townships_members(relay):
    """A classroom checks in members of its own township; a member of another township is
    answered exactly as an unknown id is (404, the same body, no name), and neither is
    recorded."""
    relay.state.store.upsert_members(
        [Member("TB001", "张三", "团堡镇"), Member("MD001", "李秘密", "谋道镇")]
    )
    links = relay.new_session()
    sid = links["session_id"]
    room = next(r for r in links["rooms"] if r["name"] == "团堡镇")
    path = f"/api/sessions/{sid}/checkin"
    status, body = await call(relay, "POST", path, room["token"], {"member_id": "TB001"})
    assert status == 200 and body["name"] == "张三"
    other = await call(relay, "POST", path, room["token"], {"member_id": "MD001"})
    unknown = await call(relay, "POST", path, room["token"], {"member_id": "NOBODY"})
    assert other == unknown and other[0] == 404
    assert "李秘密" not in json.dumps(other[1], ensure_ascii=False)
    rows = list(relay.state.attendance.ledger.rows(sid))
    assert [(r.kind, r.data["member"]) for r in rows] == [("checkin", "TB001")]


async def test_the_audit_of_a_live_lecture_states_its_length_so_far(relay):
    """The audit page of a lecture under way said 讲座时长 0 秒 under a header that reads the
    record as of now: the length counts up while live, and is the lecture's once it ended."""
    from server.attendance.events import End, Start
    from server.attendance.ledger import now_ms

    sid = relay.new_session()["session_id"]
    admin = relay.token("admin", None)
    started = now_ms() - 90_000
    await relay.state.attendance.ledger.append(sid, Start("pub"), started)
    status, page = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
    assert status == 200 and page["live"] is True, page
    assert 90 <= page["length_s"] < 150, page
    await relay.state.attendance.ledger.append(sid, End("admin"), started + 100_000)
    status, page = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
    assert status == 200 and page["live"] is False and page["length_s"] == 100, page
