"""Roll calls (点名, issue 28): proof that a person is there, in the session's signed chain.
A call answered in time on a connection receiving media counts; one missed, answered late
(refused, nothing recorded) or answered on a connection whose media was cut does not; the
rule's K-of-N decides credit; a room's answer counts for the members it checked in."""

from __future__ import annotations

import random

import pytest

from server.attendance.events import (
    Checkin,
    End,
    Heartbeat,
    Join,
    Policy,
    Replay,
    RollAnswer,
    RollCall,
    Seen,
    Start,
)
from server.attendance.ledger import Ledger
from server.attendance.report import build_report
from server.lectures import rollcalls as rollcall_module
from server.lectures.rollcalls import plan
from server.refusals import Invalid
from server.store import Member
from tests.calls import call
from tests.client import watch
from tests.test_attendance import joined, lecture, next_report, report, watching_in

T = 1_700_000_000_000


def watching(peer: str, start: int, end: int, step: int = 5_000, cut_at: int | None = None):
    """Heartbeats of a page that plays; after ``cut_at`` the relay sees nothing reach it
    (its receiver reports stop) while the page still says it plays."""
    out, rr = [], 0
    for at in range(start + step, end + 1, step):
        if cut_at is None or at <= cut_at:
            rr += 100
        out.append((Heartbeat(peer, at // 40, True, True, rr, rr), at))
    return out


def ledger_of(tmp_path, events) -> list:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for event, at in sorted(events, key=lambda e: e[1]):
        ledger.append_now("s1", event, at)
    rows = list(ledger.rows("s1"))
    ledger.close()
    return rows


def lecture_with_a_call(required: int, replay_without: bool = False) -> list:
    """A 10-minute lecture with one roll call at 5:00 (90 s) and members who answer it in
    each way, a room that answers for the member it checked in."""
    events = [(Start("pub"), T), (Policy("admin", 50, True, required, replay_without), T + 1)]
    for who in ("A", "B", "C", "D", "E"):
        events.append((Join(f"member:{who}", f"p{who}", "token", "127.0.0.1", False), T + 10))
    events.append((Join("room:R1", "pR", "token", "127.0.0.1", False), T + 10))
    events.append((Checkin("R1", "F"), T + 60_000))
    for peer in ("pA", "pB", "pC", "pE", "pR"):
        events += watching(peer, T + 10, T + 600_000)
    events += watching("pD", T + 10, T + 600_000, cut_at=T + 280_000)  # media cut at 4:40
    call = T + 300_000
    events.append((RollCall("c1", "lecturer", 90), call))
    events.append((RollAnswer("c1", "member:A", "pA"), call + 5_000))  # in time, watching
    events.append((RollAnswer("c1", "member:C", "pC"), call + 95_000))  # after the window
    events.append((RollAnswer("c1", "member:D", "pD"), call + 10_000))  # its media was cut
    events.append((RollAnswer("c1", "member:E", "pA"), call + 12_000))  # on A's connection
    events.append((RollAnswer("c1", "room:R1", "pR", 7), call + 20_000))  # for F too
    # G's page has not sent its first heartbeat yet: the relay's own evidence covers it
    events.append((Join("member:G", "pG", "token", "127.0.0.1", False), call - 3_000))
    events += [(Seen("pG", ms // 10, ms // 10), call - 3_000 + ms) for ms in (1_000, 2_000, 3_000)]
    events.append((RollAnswer("c1", "member:G", "pG"), call + 2_500))
    events += watching("pG", call + 3_000, T + 600_000)
    events.append((End("lecturer"), T + 600_000))
    return events


def test_only_an_answer_in_time_on_a_receiving_connection_counts(tmp_path):
    rep = build_report("s1", ledger_of(tmp_path, lecture_with_a_call(required=1)))
    answered = {p: r.rollcalls for p, r in rep.participants.items()}
    assert answered["member:A"] == ["c1"]
    assert answered["member:B"] == []  # missed it
    assert answered["member:C"] == []  # late (the API refuses it; the report too)
    assert answered["member:D"] == []  # the page answered, the relay saw no media reach it
    assert answered["member:E"] == []  # not its own connection
    assert answered["member:F"] == ["c1"]  # checked in at the room that answered
    assert answered["member:G"] == ["c1"]  # before its first heartbeat, on the relay's word
    assert rep.rollcalls == [("c1", T + 300_000)] and rep.rollcalls_required == 1
    credited = {p for p, r in rep.participants.items() if r.credited}
    assert credited == {"member:A", "member:F"}  # G joined late: too little of the lecture


def test_the_rule_k_of_n_and_replay_decide_credit(tmp_path):
    none_required = build_report("s1", ledger_of(tmp_path / "a", lecture_with_a_call(0)))
    assert {p for p, r in none_required.participants.items() if r.credited} >= {
        "member:A", "member:B", "member:C", "member:E", "member:F",
    }  # fmt: skip
    # a second call that nobody answers: one of two is enough with K=1, not with K=2
    events = lecture_with_a_call(required=2)
    events.append((RollCall("c2", "plan", 60), T + 500_000))
    rep = build_report("s1", ledger_of(tmp_path / "b", events))
    assert not any(r.credited for r in rep.participants.values())
    events = lecture_with_a_call(required=1)
    events.append((RollCall("c2", "plan", 60), T + 500_000))
    rep = build_report("s1", ledger_of(tmp_path / "c", events))
    assert {p for p, r in rep.participants.items() if r.credited} == {"member:A", "member:F"}

    # B missed the call and watched the replay after: credited only when the rule lets
    # replay earn without roll calls (the call is not repeated on replay)
    replayed = [
        (Replay("member:B", "v1", ms, True, True), T + 700_000 + ms)
        for ms in range(0, 400_001, 10_000)
    ]
    for without, expected in ((False, False), (True, True)):
        events = lecture_with_a_call(required=1, replay_without=without) + replayed
        rep = build_report("s1", ledger_of(tmp_path / f"r{without}", events))
        assert rep.participants["member:B"].replay_seconds >= 300
        assert rep.participants["member:B"].credited is expected


def test_a_plan_is_random_spaced_and_bounded():
    times = plan(3, 10, 80, random.Random(7))
    assert len(times) == 3 and all(600 <= t < 4800 for t in times)
    assert all(b - a >= 180 for a, b in zip(times, times[1:], strict=False))
    assert plan(3, 10, 80, random.Random(8)) != times
    for bad in ((0, 1, 2), (21, 1, 90), (2, 5, 5), (2, 5, 601), (True, 1, 9), (2, "1", 9)):
        with pytest.raises(Invalid):
            plan(*bad)


async def start_call(relay, sid: str, token: str, window_s: int = 30):
    return await call(
        relay, "POST", f"/api/sessions/{sid}/rollcalls", token, {"window_s": window_s}
    )


async def test_a_call_answered_missed_late_and_on_a_cut_connection(relay, monkeypatch):
    store = relay.state.store
    store.upsert_members([Member(f"M{i}", f"党员{i}", "团堡镇") for i in range(1, 5)])
    links = relay.new_session()
    sid = links["session_id"]
    lecturer = links["lecturer_token"]
    admin = relay.token("admin", None, "组织部")
    status, body = await start_call(relay, sid, lecturer)
    assert status == 409 and "not live" in body["error"]  # before the lecture
    pub = await lecture(relay, links)
    viewers = {}
    try:
        for i in range(1, 5):
            token = relay.token("member", sid, f"M{i}")
            viewers[i] = v = await watch(relay.http, relay.base_url, sid, token)
            await joined(relay, v)
            await v.wait_frames("video", 5, timeout=15)
        for bad in ({"window_s": 5}, {"window_s": "90"}):
            status, _ = await call(relay, "POST", f"/api/sessions/{sid}/rollcalls", lecturer, bad)
            assert status == 400
        status, _ = await start_call(relay, sid, viewers[1].token)
        assert status == 403  # a member does not start one

        # M4's media is cut: its transport drops every packet before its receiver sees it,
        # so its receiver reports stop advancing while its page says it plays
        dtls = viewers[4].pc.getTransceivers()[0].receiver.transport

        async def drop(data: bytes, arrival_time_ms: int) -> None:
            return None

        dtls._handle_rtp_data = drop
        await next_report(relay, sid, viewers[4])  # may still carry packets from before
        assert (await viewers[4].heartbeat(relay.http))[0] == 200
        await next_report(relay, sid, viewers[4])
        assert (await viewers[4].heartbeat(relay.http))[0] == 200

        status, opened = await start_call(relay, sid, lecturer)
        assert status == 201 and opened["open"] and opened["window_s"] == 30
        status, body = await start_call(relay, sid, lecturer)
        assert status == 409  # one at a time
        await next_report(relay, sid, viewers[2])
        status, seen = await viewers[2].heartbeat(relay.http)
        assert status == 200 and seen["rollcall"]["id"] == opened["id"]

        path = f"/api/sessions/{sid}/rollcalls/{opened['id']}/answers"
        for i in (1, 4):
            status, body = await call(
                relay, "POST", path, viewers[i].token, {"resource": viewers[i].resource}
            )
            assert status == 200 and body["again"] is False, body
        status, again = await call(
            relay, "POST", path, viewers[1].token, {"resource": viewers[1].resource}
        )
        assert status == 200 and again["again"] is True
        # someone else's connection, an unknown call
        status, _ = await call(
            relay, "POST", path, viewers[3].token, {"resource": viewers[1].resource}
        )
        assert status == 403
        status, _ = await call(
            relay, "POST", f"/api/sessions/{sid}/rollcalls/nope/answers", viewers[3].token,
            {"resource": viewers[3].resource},
        )  # fmt: skip
        assert status == 404
        status, listing = await call(relay, "GET", f"/api/sessions/{sid}/rollcalls", lecturer)
        assert listing["open"]["members"] == 2 and len(listing["held"]) == 1
        status, mine = await call(relay, "GET", f"/api/sessions/{sid}/rollcalls", viewers[1].token)
        assert mine["open"]["answered"] is True and "members" not in mine["open"]
        # (its receiver reports moved on since its last heartbeat: the span it closes holds
        # the relay's evidence, as a page's 10 s heartbeats always do)
        await next_report(relay, sid, viewers[1])
        status, seen = await viewers[1].heartbeat(relay.http)
        assert "rollcall" not in seen  # answered: not asked again

        # the window passes (the clock is the one thing stood in for): M3 is refused
        head = relay.state.attendance.ledger.head(sid)
        late = rollcall_module.now_ms() + 31_000
        monkeypatch.setattr(rollcall_module, "now_ms", lambda: late)
        status, body = await call(
            relay, "POST", path, viewers[3].token, {"resource": viewers[3].resource}
        )
        assert status == 410 and "closed" in body["error"]
        assert relay.state.attendance.ledger.head(sid) == head  # nothing recorded
        monkeypatch.undo()
        for i in (1, 2, 3):  # the watching pages' next heartbeats vouch for the moment
            await next_report(relay, sid, viewers[i])
            assert (await viewers[i].heartbeat(relay.http))[0] == 200
        await viewers[4].heartbeat(relay.http)
        await viewers[4].heartbeat(relay.http)
    finally:
        for v in viewers.values():
            await v.stop(relay.http)
        await pub.stop()

    rep = report(relay, sid)
    answered = {p: r.rollcalls for p, r in rep.participants.items() if p.startswith("member:")}
    assert answered == {
        "member:M1": [opened["id"]],
        "member:M2": [],
        "member:M3": [],
        "member:M4": [],
    }
    # the rule asks for one roll call (and little of the lecture's time): M1 alone earns it
    body = {"rollcalls_required": 1, "credit_threshold": 0.01}
    status, changed = await call(relay, "PATCH", f"/api/sessions/{sid}/credit-rule", admin, body)
    assert status == 200 and changed["rollcalls_required"] == 1
    status, ended = await call(relay, "POST", f"/api/sessions/{sid}/end", lecturer, {})
    assert status == 200
    status, audit = await call(relay, "GET", f"/api/sessions/{sid}/audit", admin)
    assert audit["rollcalls"][0]["answered"] == 1 and audit["rollcalls_required"] == 1
    assert audit["credited"] == 1
    tb = next(t for t in audit["townships"] if t["township"] == "团堡镇")
    assert sorted(m["member_id"] for m in tb["missed"]) == ["M2", "M3", "M4"]
    status, verdict = await call(relay, "GET", f"/api/sessions/{sid}/verify", admin)
    assert status == 200 and verdict["ok"], verdict
    rows = list(relay.state.attendance.ledger.rows(sid))
    assert [r.kind for r in rows].count("roll_answer") == 2
    status, mine = await call(relay, "GET", f"/api/sessions/{sid}/me", viewers[1].token)
    assert status == 200 and mine["rollcalls"] == [opened["id"]]
    assert mine["lecture"]["rollcalls_held"] == 1 and mine["lecture"]["rollcalls_required"] == 1
    async with relay.http.get(
        f"{relay.base_url}/api/sessions/{sid}/attendance?format=csv",
        headers={"Authorization": f"Bearer {admin}"},
    ) as resp:
        text = await resp.text()
    assert "点名应答" in text and "1/1" in text and "0/1" in text


async def test_a_planned_call_starts_when_due_and_a_room_answers_with_its_count(relay):
    admin = relay.token("admin", None, "组织部")
    body = {
        "title": "有计划的点名",
        "rollcall_plan": {"count": 2, "from_minute": 1, "to_minute": 20},
    }
    status, links = await call(relay, "POST", "/api/sessions", admin, body)
    assert status == 201
    sid = links["session_id"]
    status, listing = await call(
        relay, "GET", f"/api/sessions/{sid}/rollcalls", links["lecturer_token"]
    )
    assert listing["plan"] == {"planned": 2, "to_come": 2} and "at" not in str(listing["plan"])
    room = links["rooms"][8]
    async with watching_in(relay, links, room["token"]) as w:
        v = w.viewer
        began = relay.state.store.started_at(sid)
        first = relay.state.store.rollcall_plan(sid)[0][0]
        assert await relay.state.rollcalls.run_due(began + first - 1) == []
        (started,) = await relay.state.rollcalls.run_due(began + first)
        assert started.by == "plan"
        status, listing = await call(
            relay, "GET", f"/api/sessions/{sid}/rollcalls", links["lecturer_token"]
        )
        assert listing["plan"]["to_come"] == 1 and listing["open"]["id"] == started.id
        path = f"/api/sessions/{sid}/rollcalls/{started.id}/answers"
        status, body = await call(relay, "POST", path, room["token"], {"resource": v.resource})
        assert status == 400 and "count" in body["error"]
        status, body = await call(
            relay, "POST", path, room["token"], {"resource": v.resource, "count": 23}
        )
        assert status == 200
        await next_report(relay, sid, v)
        assert (await v.heartbeat(relay.http))[0] == 200
    rows = [r for r in relay.state.attendance.ledger.rows(sid) if r.kind == "roll_answer"]
    assert rows[0].data["count"] == 23 and rows[0].data["participant"] == f"room:{room['code']}"
    rep = report(relay, sid)
    assert rep.participants[f"room:{room['code']}"].rollcalls == [started.id]
