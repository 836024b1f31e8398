"""The ledger on its own: durable appends, the chain, tampering, signatures, derived reports."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading

import pytest

from server.attendance.events import (
    End,
    Export,
    Heartbeat,
    Join,
    Leave,
    Question,
    Replay,
    Start,
    canonical,
)
from server.attendance.exports import export_row, json_chunks, to_csv
from server.attendance.ledger import Ledger, check_chain
from server.attendance.offline import verify_export
from server.attendance.report import ParticipantReport, ReportFold, build_report
from server.attendance.signing import CheckpointLog, LedgerKey, checkpoint_from, receipt
from server.attendance.verify import verify
from server.attendance.writer import EventRefused

S = "sess1"


def test_canonical_form_is_fixed():
    data = Join("member:7", "p1", "token", "127.0.0.1", False).data()
    assert canonical(S, 3, 1000, "join", data) == (
        b'{"at_ms":1000,"data":{"address":"127.0.0.1","audio_only":false,"identified_by":'
        b'"token","participant":"member:7","peer":"p1"},"kind":"join","seq":3,"session":"sess1"}'
    )


@pytest.fixture(params=["thread", "process"])
def ledger(tmp_path, request):
    """Written from a thread (the CLI's way) and from a child process (the server's)."""
    lg = Ledger(tmp_path / "ledger.sqlite3", process=request.param == "process")
    yield lg
    lg.close()


@pytest.fixture
def key(tmp_path):
    return LedgerKey.load_or_create(tmp_path / "keys" / "ledger.pem")


def fill(ledger: Ledger, n_beats: int = 5) -> None:
    t = 1_000_000
    ledger.append_now(S, Start("pub"), t)
    ledger.append_now(S, Join("member:1", "p1", "token", "127.0.0.1", False), t + 100)
    for i in range(n_beats):
        ledger.append_now(
            S, Heartbeat("p1", 30 * (i + 1), True, True, 100 + i, 50 + i), t + 10_000 * (i + 1)
        )
    ledger.append_now(S, Leave("p1", "delete"), t + 10_000 * n_beats + 500)
    ledger.append_now(S, End("lecturer"), t + 10_000 * n_beats + 1000)


async def test_concurrent_appends_are_group_committed_in_order(ledger):
    beats = [Heartbeat(f"p{i}", i, True, True, i, i) for i in range(200)]
    done = await asyncio.gather(*(ledger.append(S, b) for b in beats))
    assert [d.seq for d in done] == list(range(1, 201))
    assert ledger.batches < 200  # several appends shared a commit
    rows = list(ledger.rows(S))
    assert [r.data["peer"] for r in rows] == [f"p{i}" for i in range(200)]
    assert check_chain(rows, S).ok


async def test_a_trickle_of_appends_shares_commits_within_the_interval(tmp_path):
    """Under a steady trickle (the real load: a heartbeat per member every 10 s) appends wait
    up to the commit interval to share a commit, and each is on disk when acknowledged."""
    ledger = Ledger(tmp_path / "ledger.sqlite3", commit_interval_s=0.2)
    other = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        await ledger.append(S, Start("pub"))  # the first commits at once
        assert ledger.batches == 1
        pending = []
        for i in range(10):
            pending.append(
                asyncio.ensure_future(ledger.append(S, Heartbeat(f"p{i}", i, True, True, i, i)))
            )
            await asyncio.sleep(0.005)  # paces the trickle; nothing is asserted on timing
        for future in asyncio.as_completed(pending):
            done = await future
            # acknowledged means durable: another connection reads it
            row = other.execute(
                "SELECT kind FROM events WHERE session = ? AND seq = ?", (S, done.seq)
            ).fetchone()
            assert row == ("heartbeat",)
        assert ledger.batches <= 3  # ten appends, one commit or two after the first
        assert check_chain(list(ledger.rows(S)), S).ok
    finally:
        other.close()
        ledger.close()


async def test_drain_waits_for_every_write_handed_over_before_it(tmp_path, key):
    """A leaving member's DELETE answers once the leave is on disk: drain waits for the
    newest write (the ledger commits in order), however many are pending."""
    from media.session import MediaEvent
    from server.attendance.tracker import Attendance, Identity

    ledger = Ledger(tmp_path / "ledger.sqlite3", commit_interval_s=0.05)

    async def close_peer(session: str, peer: str, reason: str) -> bool:
        return True

    att = Attendance(ledger, key, CheckpointLog(tmp_path / "checkpoints.jsonl"), close_peer, 0)
    try:
        ident = Identity("member:1", "token", "member", "1", "127.0.0.1", False)
        for i in range(300):
            att.on_media_event(MediaEvent("viewer_connected", S, f"p{i}", ident))
            att.on_media_event(MediaEvent("viewer_gone", S, f"p{i}", None, "delete"))
        assert ledger.head(S)[0] < 600  # still pending: the commit interval holds them
        await att.drain()
        assert ledger.head(S)[0] == 600
        rows = list(ledger.rows(S))
        assert [r.kind for r in rows[-2:]] == ["join", "leave"] and check_chain(rows, S).ok
    finally:
        ledger.close()


async def test_drain_does_not_wait_for_what_arrives_after_it(tmp_path, key):
    """Members keep joining while one leaves: the leave's DELETE answers once what came
    before it is on disk, not once the ledger falls idle."""
    from media.session import MediaEvent
    from server.attendance.tracker import Attendance, Identity

    ledger = Ledger(tmp_path / "ledger.sqlite3", commit_interval_s=0.02)

    async def close_peer(session: str, peer: str, reason: str) -> bool:
        return True

    att = Attendance(ledger, key, CheckpointLog(tmp_path / "checkpoints.jsonl"), close_peer, 0)
    ident = Identity("member:1", "token", "member", "1", "127.0.0.1", False)
    arrived = 0

    def arrive(_=None) -> None:
        # another member joins as each commit lands (before anyone waiting hears of it),
        # up to 50 commits: there is always a newer join pending
        nonlocal arrived
        if arrived < 50:
            arrived += 1
            att.on_media_event(MediaEvent("viewer_connected", S, f"late{arrived}", ident))
            att._newest.add_done_callback(arrive)

    att.on_media_event(MediaEvent("viewer_connected", S, "p", ident))
    att.on_media_event(MediaEvent("viewer_gone", S, "p", None, "delete"))
    arrive()
    try:
        await att.drain()
        rows = list(ledger.rows(S))
        assert [r.kind for r in rows[:2]] == ["join", "leave"]
        assert arrived < 10  # it answered after the first commits, not after all 50
    finally:
        arrived = 50  # no more arrivals
        await att.drain()
        ledger.close()


async def test_an_event_that_cannot_be_encoded_is_refused_alone_and_its_batch_mates_written(
    ledger, key
):
    """Below the edge (which refuses such text itself): a lone surrogate or a NaN in one
    event of a batch refuses that event alone; every other event of the batch, in either
    session, is acknowledged and in its chain, signed and verified."""
    good: list[tuple[str, object]] = []
    futures = []
    for i in range(6):
        for session in ("sA", "sB"):
            event = Heartbeat(f"p{i}", i, True, True, i, i)
            good.append((session, event))
            futures.append(ledger.submit(session, event))
        if i == 2:  # in the middle of the batch, one of each kind of bad text
            bad = [
                ledger.submit("sA", Question(1, "member:1", "\ud800")),
                ledger.submit("sB", Replay("member:2", "v1", float("nan"), True, True)),
            ]
    done = await asyncio.gather(*futures, *bad, return_exceptions=True)
    acked, refused = done[: len(futures)], done[len(futures) :]
    assert all(isinstance(r, EventRefused) for r in refused), refused
    assert "not valid Unicode" in str(refused[0]) and "JSON" in str(refused[1])
    assert [a.seq for a in acked[0::2]] == [1, 2, 3, 4, 5, 6]  # no gap where the bad one was
    assert [a.seq for a in acked[1::2]] == [1, 2, 3, 4, 5, 6]
    assert ledger.batches == 1  # they did share one commit
    for session in ("sA", "sB"):
        rows = list(ledger.rows(session))
        assert [r.kind for r in rows] == ["heartbeat"] * 6
        assert [r.data for r in rows] == [e.data() for s, e in good if s == session]
        seq, head = ledger.head(session)
        signed = [key.sign(session, seq, head, 1, final=True)]
        verdict = verify(session, ledger.rows(session), signed, key.public)
        assert verdict.ok and verdict.events == 6
    with pytest.raises(EventRefused):  # the CLI's blocking append says so too
        ledger.append_now("sA", Question(2, "member:1", "x\udfff"))
    assert ledger.head("sA")[0] == 6


def test_the_ledger_refuses_updates_and_deletes_through_sql(ledger):
    fill(ledger)
    db = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE events SET data = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM events WHERE seq = 2")
    db.close()


def tamper(path, *statements):
    """What someone with the database file can do: drop the guards, change rows."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS events_no_update")
    db.execute("DROP TRIGGER IF EXISTS events_no_delete")
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()


def test_an_edited_row_is_caught_and_named(ledger):
    fill(ledger)
    row = next(r for r in ledger.rows(S) if r.seq == 4)
    edited = dict(row.data, frames_decoded=9999)
    tamper(ledger.path, ("UPDATE events SET data = ? WHERE seq = 4", (json.dumps(edited),)))
    result = check_chain(list(ledger.rows(S)), S)
    assert not result.ok and result.first_bad_seq == 4


def test_verify_reads_past_an_edit_to_check_later_signatures(ledger, key):
    fill(ledger)
    seq, head = ledger.head(S)
    cp = key.sign(S, seq, head, 1, final=True)
    row = next(r for r in ledger.rows(S) if r.seq == 4)
    edited = dict(row.data, frames_decoded=9999)
    tamper(ledger.path, ("UPDATE events SET data = ? WHERE seq = 4", (json.dumps(edited),)))
    # the chain breaks at 4; the signed head at the last event is still found and matches
    verdict = verify(S, ledger.rows(S), [cp], key.public)
    assert not verdict.ok and verdict.first_bad_seq == 4 and verdict.checkpoints == 1
    assert verdict.problems == ["event 4 was altered"]


def test_verify_counts_the_events_no_signature_covers_yet(ledger, key):
    fill(ledger)
    last, head = ledger.head(S)
    cp = key.sign(S, 3, next(r.hash for r in ledger.rows(S) if r.seq == 3), 1, final=False)
    verdict = verify(S, ledger.rows(S), [cp], key.public)
    assert verdict.ok and verdict.unsigned == last - 3
    assert f"the last {last - 3} not signed yet" in verdict.summary()
    signed = verify(S, ledger.rows(S), [cp, key.sign(S, last, head, 2, final=True)], key.public)
    assert signed.ok and signed.unsigned == 0 and "not signed" not in signed.summary()


def test_a_deleted_row_is_caught_and_named(ledger):
    fill(ledger)
    tamper(ledger.path, ("DELETE FROM events WHERE seq = 3", ()))
    result = check_chain(list(ledger.rows(S)), S)
    assert not result.ok and result.first_bad_seq == 3 and "missing" in result.reason


def test_an_inserted_row_is_caught_and_named(ledger):
    fill(ledger)
    rows = list(ledger.rows(S))
    # shift events 4.. up by one and slip a forged heartbeat in at 4
    stmts = [("UPDATE events SET seq = seq + 1000 WHERE seq >= 4", ())]
    stmts += [("UPDATE events SET seq = seq - 999 WHERE seq >= 1000", ())]
    stmts += [
        (
            "INSERT INTO events VALUES (?, 4, ?, 'heartbeat', ?, ?, ?)",
            (S, rows[2].at_ms + 1, json.dumps(rows[2].data), rows[2].hash, "ab" * 32),
        )
    ]
    tamper(ledger.path, *stmts)
    result = check_chain(list(ledger.rows(S)), S)
    assert not result.ok and result.first_bad_seq == 4


def rewrite_everything(ledger: Ledger, change) -> None:
    """A full rewrite: change an event and recompute every hash after it."""
    from server.attendance.events import GENESIS, chain_hash

    rows = list(ledger.rows(S))
    prev = GENESIS
    stmts = [("DELETE FROM events WHERE session = ?", (S,))]
    for r in rows:
        data = change(r)
        digest = chain_hash(prev, canonical(S, r.seq, r.at_ms, r.kind, data))
        stmts.append(
            (
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (S, r.seq, r.at_ms, r.kind, json.dumps(data, sort_keys=True), prev, digest),
            )
        )
        prev = digest
    tamper(ledger.path, *stmts)


def forge(r):
    if r.kind == "heartbeat":
        return dict(r.data, peer="p1", frames_decoded=r.data["frames_decoded"] + 1)
    return r.data


def test_a_full_rewrite_passes_the_chain_but_not_the_signatures(ledger, key, tmp_path):
    fill(ledger)
    seq, head = ledger.head(S)
    cp = key.sign(S, seq, head, 1, final=True)
    ledger.save_checkpoint(cp)
    kept = receipt(cp, key.public)  # the admin keeps this outside the server
    assert verify(S, list(ledger.rows(S)), ledger.checkpoints(S), key.public).ok

    rewrite_everything(ledger, forge)
    rows = list(ledger.rows(S))
    assert check_chain(rows, S).ok  # the chain alone is fooled
    verdict = verify(S, rows, ledger.checkpoints(S), key.public)
    assert not verdict.ok and "rewritten" in verdict.summary()

    # even with the checkpoints table emptied too, the receipt kept elsewhere catches it
    tamper(ledger.path, ("DELETE FROM checkpoints", ()))
    assert verify(S, rows, ledger.checkpoints(S), key.public).ok  # nothing left to compare
    verdict = verify(S, rows, [], key.public, checkpoint_from(kept))
    assert not verdict.ok and verdict.receipt_checked


def test_a_forged_signature_is_refused(ledger, key, tmp_path):
    fill(ledger)
    seq, head = ledger.head(S)
    other = LedgerKey.load_or_create(tmp_path / "other.pem")
    forged = other.sign(S, seq, head, 1, final=True)
    verdict = verify(S, list(ledger.rows(S)), [forged], key.public)
    assert not verdict.ok and "no valid signature" in verdict.summary()


def test_key_file_is_private_and_stable(tmp_path):
    path = tmp_path / "k" / "ledger.pem"
    a = LedgerKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert LedgerKey.load_or_create(path).fingerprint == a.fingerprint
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        LedgerKey.load_or_create(path)


def test_checkpoint_log_is_append_only_json_lines(tmp_path, key):
    log = CheckpointLog(tmp_path / "cp.jsonl")
    log.append(key.sign(S, 1, "aa" * 32, 5, False))
    log.append(key.sign("other", 2, "bb" * 32, 6, True))
    assert [c.seq for c in log.read(S)] == [1]
    assert len((tmp_path / "cp.jsonl").read_text().splitlines()) == 2


def test_an_exported_file_verifies_offline_and_an_edit_to_it_does_not(ledger, key):
    fill(ledger)
    seq, head = ledger.head(S)
    cp = key.sign(S, seq, head, 1, final=True)
    rows = list(ledger.rows(S))
    report = build_report(S, rows)
    doc = json.loads(b"".join(json_chunks(report, rows, [cp.as_json()], receipt(cp, key.public))))
    assert verify_export(doc, key.public).ok
    doc["events"][3]["data"]["frames_decoded"] += 100
    verdict = verify_export(doc, key.public)
    assert not verdict.ok and verdict.first_bad_seq == 4


def ev(kind, at, **data):
    from server.attendance.ledger import Row

    return Row(S, 0, at, kind, data, "", "")


def beat(peer, at, frames, vrr, arr=-1, audio=False, **more):
    return ev(
        "heartbeat",
        at,
        peer=peer,
        frames_decoded=frames,
        audio_playing=audio,
        visible=True,
        video_rr=vrr,
        audio_rr=arr,
        **more,
    )


def join(peer, at, who):
    return ev(
        "join", at, participant=who, peer=peer, identified_by="token", address="x", audio_only=False
    )


def test_seconds_count_only_with_both_page_and_relay_evidence():
    rows = [
        ev("start", 0, publisher="pub"),
        join("a", 0, "member:1"),
        beat("a", 10_000, 250, 100),  # page and relay both advanced: 10 s
        beat("a", 20_000, 500, 200),  # 10 s more
        beat("a", 30_000, 750, 200),  # page says playing, relay saw nothing: 0
        beat("a", 40_000, 1000, 200),  # again nothing
        ev("leave", 41_000, peer="a", reason="delete"),
        ev("end", 50_000, by="lecturer"),
    ]
    rep = build_report(S, rows).participants["member:1"]
    assert rep.seconds_watched == 20
    assert rep.unverified_s == 20


def test_a_span_earns_no_more_than_the_page_says_it_played():
    """A page that stalled 4 s of a 10 s span (a hand-over) says it played 6 s: the span earns
    6; a page that says it played more than the span earns the span; one that does not say
    (older pages, other clients) earns the span, as before."""
    rows = [
        ev("start", 0, publisher="pub"),
        join("a", 0, "member:1"),
        beat("a", 10_000, 250, 100, played_ms=6_000),
        beat("a", 20_000, 500, 200, played_ms=99_000),
        beat("a", 30_000, 750, 300),
        ev("leave", 31_000, peer="a", reason="delete"),
        ev("end", 40_000, by="lecturer"),
    ]
    rep = build_report(S, rows).participants["member:1"]
    assert rep.seconds_watched == 6 + 10 + 10
    fold = ReportFold(S)
    fold.add_event(1, 0, Start("pub"))
    fold.add_event(2, 0, Join("member:1", "a", "token", "x", False))
    fold.add_event(3, 10_000, Heartbeat("a", 250, True, True, 100, 100, 2_500))
    assert fold.report().participants["member:1"].seconds_watched == 2.5  # the fast path too


def test_two_devices_count_once_and_reconnects_make_intervals():
    rows = [
        ev("start", 0, publisher="pub"),
        join("phone", 0, "member:1"),
        join("pc", 5_000, "member:1"),
        beat("phone", 10_000, 250, 10),
        beat("pc", 15_000, 250, 10),
        ev("leave", 16_000, peer="phone", reason="ice_failure"),
        ev("leave", 16_000, peer="pc", reason="delete"),
        join("phone2", 30_000, "member:1"),
        beat("phone2", 40_000, 200, 5),
        ev("leave", 41_000, peer="phone2", reason="delete"),
        ev("end", 50_000, by="x"),
    ]
    rep = build_report(S, rows).participants["member:1"]
    assert rep.seconds_watched == 15 + 10  # [0,15] union, then [30,40]
    assert rep.intervals == [(0, 16_000), (30_000, 41_000)]
    assert rep.reconnects == 2 and rep.joins == 3


def test_threshold_decides_credit_and_room_checkins_are_credited():
    rows = [
        ev("start", 0, publisher="pub"),
        join("room", 0, "room:11112222"),
        join("late", 80_000, "member:2"),
    ]
    rows += [beat("room", t, t // 40, t // 20) for t in range(10_000, 100_001, 10_000)]
    rows += [ev("checkin", 5_000, room="11112222", member="1")]
    rows += [ev("checkin", 60_000, room="11112222", member="3")]
    rows += [beat("late", 90_000, 10, 1), beat("late", 100_000, 20, 2)]
    rows += [ev("end", 100_000, by="x")]
    report = build_report(S, rows, threshold=0.8, rooms={"11112222": "团堡镇"})
    p = report.participants
    assert p["member:1"].credited and p["member:1"].via_room == "团堡镇"
    assert p["member:1"].seconds_watched == 95  # from its check-in at 5 s
    assert not p["member:3"].credited and p["member:3"].seconds_watched == 40
    assert not p["member:2"].credited and p["member:2"].seconds_watched == 20
    lax = build_report(S, rows, threshold=0.35).participants
    assert lax["member:3"].credited and not lax["member:2"].credited
    assert not p["room:11112222"].credited  # rooms stand for members, they earn nothing


def test_csv_has_a_bom_chinese_headers_and_the_receipt(ledger, key):
    fill(ledger)
    seq, head = ledger.head(S)
    rec = receipt(key.sign(S, seq, head, 1, True), key.public)
    body = to_csv(build_report(S, list(ledger.rows(S))), rec)
    assert body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("党员编号,姓名,乡镇/教室")
    assert "签名回执" in text and key.fingerprint in text


def test_canonical_form_equals_sorted_compact_json_of_the_whole_event():
    cases = [
        ("s1", {"peer": "p", "n": None, "ok": True, "f": 1.5}),
        ('会话"x', {"名字": "张三", "list": [1, "二"], "esc": "a\\nb"}),
    ]
    for session, data in cases:
        whole = {"at_ms": 7, "data": data, "kind": "join", "seq": 3, "session": session}
        expected = json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical(session, 3, 7, "join", data) == expected.encode()


def rp(at, pos_s, playing=True, view="v1", who="member:1"):
    return ev(
        "replay",
        at,
        participant=who,
        view=view,
        position_ms=int(pos_s * 1000),
        playing=playing,
        visible=True,
    )


def test_replay_counts_distinct_media_seconds_actually_played():
    from server.attendance.report import replay_spans

    rows = [
        rp(0, 0),
        rp(10_000, 10),
        rp(20_000, 20),  # 0-20 played
        rp(21_000, 60),
        rp(31_000, 70),  # a seek ahead to 60: 20-60 earns nothing; 60-70 does
        rp(32_000, 5),
        rp(42_000, 15),  # watching 5-15 again counts once
        rp(43_000, 15, playing=False),
        rp(90_000, 15, playing=False),  # paused: nothing
        rp(0, 100, view="phone2", who="member:2"),
        rp(10_000, 110, view="phone2", who="member:2"),
    ]
    spans = replay_spans(rows)
    assert spans["member:1"] == [(0, 20_000), (60_000, 70_000)]
    assert spans["member:2"] == [(100_000, 110_000)]


def test_the_session_setting_decides_whether_replay_earns_credit():
    rows = [ev("start", 0, publisher="p"), ev("end", 100_000, by="x")]
    rows += [rp(i * 10_000, i * 10) for i in range(10)]  # 90 s of the 100 s lecture
    assert build_report(S, rows, 0.8, replay_credit=True).participants["member:1"].credited
    off = build_report(S, rows, 0.8, replay_credit=False).participants["member:1"]
    assert not off.credited and off.replay_seconds == 90 and off.total_seconds == 90


def test_a_report_brought_up_to_date_equals_one_folded_from_the_start(ledger):
    from server.attendance.events import Checkin, Headcount, Replay
    from server.attendance.exports import export_row, rows_for_export
    from server.attendance.report_cache import Reports

    def beats(peer, first, last, step=10_000):
        return [
            (Heartbeat(peer, t // 40, False, True, t // 20, -1), t)
            for t in range(first, last + 1, step)
        ]

    part1 = [
        (Start("pub"), 0),
        (Join("member:1", "a", "token", "10.0.0.1", False), 0),
        (Join("room:11112222", "r", "token", "10.0.0.2", False), 0),
        (Headcount("11112222", 2), 1_000),
        (Checkin("11112222", "3"), 2_000),
        *beats("a", 10_000, 40_000),
        *beats("r", 10_000, 40_000),
        (Leave("a", "ice_failure"), 41_000),
    ]
    part2 = [
        (Join("member:1", "a2", "token", "10.0.0.1", False), 50_000),  # reconnects
        *beats("a2", 60_000, 90_000),
        *beats("r", 50_000, 90_000),
        (Replay("member:4", "v", 0, True, True), 60_000),
        (Replay("member:4", "v", 10_000, True, True), 70_000),
        (Leave("a2", "delete"), 95_000),
        (End("lecturer"), 100_000),
    ]
    reports = Reports(ledger)
    for event, at in part1:
        ledger.append_now(S, event, 1_000_000 + at)
    early = reports.report(S, rooms={"11112222": "团堡镇"})
    early_rows = rows_for_export(early)
    for event, at in part2:
        ledger.append_now(S, event, 1_000_000 + at)
    late = reports.report(S, rooms={"11112222": "团堡镇"})
    fresh = build_report(S, ledger.rows(S), rooms={"11112222": "团堡镇"})

    assert rows_for_export(late) == rows_for_export(fresh)
    assert late.concurrency == fresh.concurrency and late.headcounts == fresh.headcounts
    member = late.participants["member:1"]
    assert member.seconds_watched == 80 and member.reconnects == 1  # 0-40 s, 50-90 s
    assert late.participants["member:3"].via_room == "团堡镇"  # checked in before part 2
    assert late.participants["member:4"].replay_seconds == 10
    # a report handed out earlier is not changed by bringing the fold up to date
    assert rows_for_export(early) == early_rows
    assert early.participants["member:1"].seconds_watched == 40
    # one participant's record alone (a member reading their own) is their row of the whole
    for pid, whole in late.participants.items():
        alone = reports.alone(S, pid, rooms={"11112222": "团堡镇"})
        assert pid in alone.participants  # with the rooms that check them in, if any
        assert export_row(alone.participants[pid]) == export_row(whole), pid
        assert (alone.start_ms, alone.end_ms) == (late.start_ms, late.end_ms)
    assert reports.alone(S, "member:nobody").participants == {}


async def test_reports_follow_the_ledger_as_it_is_appended_to(ledger):
    """A session's fold takes in events as they become durable, from the events in hand: up
    to date without reading the ledger back. Events it could not take in order (appended
    elsewhere, or while the fold was busy) wait for the next refresh, which reads from where
    it stopped."""
    from server.attendance.events import Headcount
    from server.attendance.exports import rows_for_export
    from server.attendance.report_cache import Reports

    reports = Reports(ledger)
    ledger.on_durable = reports.follow
    await ledger.append(S, Start("pub"), 1_000)
    await ledger.append(S, Join("member:1", "p1", "token", "127.0.0.1", False), 1_100)
    await ledger.append(S, Heartbeat("p1", 25, True, True, 10, 10), 11_000)
    assert reports.folded(S) == 3  # no refresh, no report asked for

    ledger.append_now(S, Heartbeat("p1", 50, True, True, 20, 20), 21_000)  # the CLI's way
    await ledger.append(S, Heartbeat("p1", 75, True, True, 30, 30), 31_000)
    assert reports.folded(S) == 3  # out of order: left for the refresh
    report = reports.report(S)
    assert reports.folded(S) == 5
    assert rows_for_export(report) == rows_for_export(build_report(S, ledger.rows(S)))

    fold = reports.refresh(S)
    with fold.lock:  # a report being built on a worker thread
        await ledger.append(S, Leave("p1", "delete"), 35_000)
    await ledger.append(S, End("lecturer"), 40_000)
    assert reports.folded(S) == 5
    assert rows_for_export(reports.report(S)) == rows_for_export(build_report(S, ledger.rows(S)))
    await ledger.append(S, Headcount("11112222", 2), 41_000)
    assert reports.folded(S) == 8  # following again
    late = reports.report(S)
    assert late.headcounts == {"11112222": 2}
    assert late.participants["member:1"].watched == [(1_100, 31_000)]  # join to last beat


def test_a_paced_fold_takes_every_event_in_order_and_pauses_between_runs_of_them(
    ledger, monkeypatch
):
    from server.attendance import report_cache as cache
    from server.attendance.report_cache import Reports, paced_rows

    pauses: list[float] = []
    monkeypatch.setattr(cache.time, "sleep", pauses.append)  # the clock only
    assert list(paced_rows(iter(range(10)), every=4, pause_s=0.5)) == list(range(10))
    assert pauses == [0.5, 0.5]

    fill(ledger, n_beats=3 * cache.PACE_EVERY)
    pauses.clear()
    paced = Reports(ledger).refresh(S, paced=True).report()
    assert len(pauses) == ledger.head(S)[0] // cache.PACE_EVERY
    whole = Reports(ledger).report(S)
    assert paced.participants["member:1"].watched == whole.participants["member:1"].watched


async def test_a_writer_process_ignores_stop_signals_and_a_dead_one_is_replaced(tmp_path):
    import os
    import signal

    ledger = Ledger(tmp_path / "ledger.sqlite3", process=True)
    try:
        first = await ledger.append(S, Start("pub"))
        child = ledger._writer.process
        os.kill(child.pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
        os.kill(child.pid, signal.SIGTERM)  # and so does a service stop: the server drains
        second = await ledger.append(S, Join("member:1", "p1", "token", "127.0.0.1", False))
        assert child.poll() is None and (first.seq, second.seq) == (1, 2)

        child.kill()
        child.wait()
        # the next batch goes to a new writer, and the chain goes on
        third = await ledger.append(S, Heartbeat("p1", 50, True, True, 20, 20))
        assert ledger._writer.process.pid != child.pid
        assert third.seq == 3 and check_chain(list(ledger.rows(S)), S).ok
    finally:
        ledger.close()
    assert ledger._writer.process.poll() is not None  # closing the ledger ended its writer


async def test_the_event_loop_waits_on_its_writer_process_without_blocking(tmp_path):
    """The loop's appends wait for the child's answer on the loop: a blocking call made on
    the loop meanwhile is refused (it would wait for itself), and an append cancelled
    mid-exchange leaves a writer that answers the next one in order."""
    import os
    import signal

    from server.attendance.writer import WriterProcess
    from tests.waiting import until

    path = tmp_path / "ledger.sqlite3"
    writer = WriterProcess(path)
    try:
        first = await writer.append_async([(S, Start("pub"), 1_000, None)])
        child = writer.process
        os.kill(child.pid, signal.SIGSTOP)  # it takes the next batch, and does not answer
        join = Join("member:1", "p1", "token", "127.0.0.1", False)
        stuck = asyncio.ensure_future(writer.append_async([(S, join, 1_100, None)]))
        await until(lambda: writer._loop_thread is not None)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beating = asyncio.ensure_future(ticker())
        await until(lambda: ticks >= 5)  # the loop runs while the append waits
        beating.cancel()
        with pytest.raises(RuntimeError, match="in flight"):
            writer.append([(S, join, 1_100, None)])
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert child.wait(timeout=10) is not None  # the stopped child was put down

        started_in = []  # which thread starts the next child (a spy on our own method)
        start = writer._start
        writer._start = lambda: (started_in.append(threading.current_thread()), start())
        second = await writer.append_async([(S, join, 1_200, None)])
        assert writer.process.pid != child.pid
        # off the loop, on the writer's own thread (not behind the default executor's jobs)
        assert len(started_in) == 1 and started_in[0] is not threading.current_thread()
        assert started_in[0].name.startswith("ledger-restart")
        assert (first[0].seq, second[0].seq) == (1, 2)  # the cancelled batch never landed
        assert writer.write_seconds.count == 2  # the child said how long each one took
    finally:
        writer.close()
    ledger = Ledger(path)
    try:
        assert check_chain(list(ledger.rows(S)), S).ok
    finally:
        ledger.close()


def test_a_restart_reads_only_sessions_not_ended_and_closes_their_open_intervals(
    ledger, key, tmp_path
):
    from server.attendance.tracker import Attendance

    # "done" ended and was signed. (Its open join cannot happen for real: it shows that an
    # ended session is not read again.)
    ledger.append_now("done", Start("pub"), 1_000)
    ledger.append_now("done", Join("member:1", "d1", "token", "x", False), 1_100)
    ledger.append_now("done", End("lecturer"), 2_000)
    seq, head = ledger.head("done")
    ledger.save_checkpoint(key.sign("done", seq, head, 2_000, final=True))
    # "live" was cut by a crash: one member still watching, one who had left
    ledger.append_now("live", Start("pub"), 1_000)
    ledger.append_now("live", Join("member:2", "l1", "token", "x", False), 1_100)
    ledger.append_now("live", Join("member:3", "l2", "token", "x", False), 1_200)
    ledger.append_now("live", Heartbeat("l1", 25, True, True, 10, 10), 5_000)
    ledger.append_now("live", Leave("l2", "delete"), 3_000)
    assert ledger.sessions() == ["done", "live"] and ledger.open_sessions() == ["live"]

    async def close_peer(session: str, peer: str, reason: str) -> bool:
        return False

    attendance = Attendance(ledger, key, CheckpointLog(tmp_path / "cp.jsonl"), close_peer)
    assert attendance.recover() == 1
    last = list(ledger.rows("live"))[-1]
    assert (last.kind, last.data, last.at_ms) == (
        "leave",
        {"peer": "l1", "reason": "server_restart"},
        5_000,  # closed at its last evidence
    )
    assert [r.kind for r in ledger.rows("done")][-1] == "end"


async def test_a_restart_signs_what_the_last_run_appended_after_its_last_tick(
    ledger, key, tmp_path
):
    """An export read after the lecture, then the server stopped before its next tick: the
    restarted tracker finds the unsigned tail and signs it."""
    from server.attendance.tracker import Attendance

    ledger.append_now("done", Start("pub"), 1_000)
    ledger.append_now("done", End("lecturer"), 2_000)
    seq, head = ledger.head("done")
    ledger.save_checkpoint(key.sign("done", seq, head, 2_000, final=True))
    ledger.append_now("done", Export("组织部", "csv", False), 3_000)  # after the receipt
    ledger.append_now("quiet", Start("pub"), 1_000)  # never signed at all
    ledger.append_now("signed", Start("pub"), 1_000)
    seq, head = ledger.head("signed")
    ledger.save_checkpoint(key.sign("signed", seq, head, 1_000, final=False))
    assert sorted(ledger.unsigned_sessions()) == ["done", "quiet"]

    async def close_peer(session: str, peer: str, reason: str) -> bool:
        return False

    attendance = Attendance(ledger, key, CheckpointLog(tmp_path / "cp.jsonl"), close_peer)
    attendance.recover()
    await attendance.close()  # signs what is due, as the first tick would
    assert ledger.unsigned_sessions() == []
    assert attendance.final_receipt("done")["seq"] == 2  # the lecture's receipt stays


def test_a_json_export_comes_in_pieces_and_still_verifies_offline(ledger, key, monkeypatch):
    from server.attendance import exports as report_module
    from server.attendance.exports import render_chunks
    from server.attendance.report import ReportFold

    monkeypatch.setattr(report_module, "JSON_EVENTS_PER_CHUNK", 3)
    fill(ledger)  # 9 events
    seq, head = ledger.head(S)
    cp = key.sign(S, seq, head, 1, final=True)
    report = ReportFold(S).feed(ledger.scan(S)).report()
    pieces = list(render_chunks("json", report, ledger, [cp], receipt(cp, key.public), False))
    assert len(pieces) == 5  # the head, three pieces of three events, the tail
    doc = json.loads(b"".join(pieces))
    assert [e["seq"] for e in doc["events"]] == list(range(1, 10))
    assert doc["participants"][0]["participant"] == "member:1"
    assert verify_export(doc, key.public).ok


def test_an_export_file_is_checked_a_line_at_a_time_and_a_reformatted_one_whole(
    ledger, key, tmp_path
):
    from server.attendance.exports import render_chunks
    from server.attendance.offline import _head_and_tail, verify_export_file
    from server.attendance.report import ReportFold

    fill(ledger)
    seq, head = ledger.head(S)
    cp = key.sign(S, seq, head, 1, final=True)
    report = ReportFold(S).feed(ledger.scan(S)).report()
    path = tmp_path / "export.json"
    path.write_bytes(b"".join(render_chunks("json", report, ledger, [cp], None, False)))
    before, after = _head_and_tail(path)  # the layout the line-at-a-time check reads
    assert before["session"] == S and [c["seq"] for c in after["checkpoints"]] == [seq]
    assert verify_export_file(path, key.public).ok
    original = path.read_text()

    lines = original.split("\n")  # an edit that keeps the layout
    at = next(i for i, line in enumerate(lines) if line.startswith('{"seq":4,'))
    event = json.loads(lines[at].removesuffix(","))
    event["data"]["frames_decoded"] += 100
    lines[at] = json.dumps(event, separators=(",", ":")) + ","
    path.write_text("\n".join(lines))
    verdict = verify_export_file(path, key.public)
    assert not verdict.ok and verdict.first_bad_seq == 4

    doc = json.loads(original)
    doc["events"][3]["data"]["frames_decoded"] += 100
    path.write_text(json.dumps(doc, indent=4))  # reformatted by some other tool: read whole
    verdict = verify_export_file(path, key.public)
    assert not verdict.ok and verdict.first_bad_seq == 4
    path.write_text("{not json")
    assert not verify_export_file(path, key.public).ok


def test_a_heartbeat_that_comes_after_later_ones_adds_no_time(tmp_path):
    """A cluster edge resends what a restarted Redis lost after newer events went through, so
    in the chain a heartbeat can follow later ones of its connection. It earns nothing: the
    time it covers is counted as if it had never come (not a backwards span)."""
    from server.attendance.report import ReportFold

    t = 1_000_000
    beats = [
        (t + 10_000 * (i + 1), Heartbeat("p1", 30 * (i + 1), True, True, 100 + i, 50 + i))
        for i in range(5)
    ]
    beats[2] = (beats[2][0], Heartbeat("p1", 90, True, True, -1, -1))  # the page's word alone
    watched = {}
    for name, order in (
        ("in order", beats),
        ("third missing", beats[:2] + beats[3:]),
        ("third late", beats[:2] + beats[3:] + beats[2:3]),
    ):
        ledger = Ledger(tmp_path / f"{name}.sqlite3")
        ledger.append_now(S, Start("pub"), t)
        ledger.append_now(S, Join("member:1", "p1", "token", "127.0.0.1", False), t + 100)
        for at, beat in order:
            ledger.append_now(S, beat, at)
        ledger.append_now(S, Leave("p1", "delete"), t + 60_000)
        person = ReportFold(S).feed(ledger.scan(S)).report().participants["member:1"]
        watched[name] = (person.seconds_watched, person.unverified_s)
        ledger.close()
    assert watched["third late"] == watched["third missing"]
    assert watched["in order"][1] > 0 and watched["third missing"][0] > 0


def test_an_edge_outbox_goes_into_the_ledger_once_each_and_in_its_order(tmp_path):
    """What the stream writer hands over of an edge's outbox: (box, row, the mark the edge
    had heard of). A row at or below the mark is a duplicate; one past a gap (rows Redis lost)
    waits for them to come again; an unreadable row only moves the mark; and a mark the edge
    says is higher than the ledger's is followed, not waited for."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")

    def rows(*numbers, base=0, box="b1"):
        return [(S, _beat(n), 1000 + n, (box, n, base)) for n in numbers]

    def _beat(n):
        return Heartbeat("p1", n, True, True, n, n)

    assert ledger.apply_stream(rows(1, 2)) == 2
    assert ledger.apply_stream(rows(2, 4, 5)) == 0  # 2 again; 4 and 5 past a lost 3
    assert ledger.outbox_marks(["b1", "b2"]) == {"b1": 2, "b2": 0}
    assert ledger.apply_stream(rows(3, 4, 5)) == 3  # sent again, in order
    assert ledger.apply_stream([(S, None, 0, ("b1", 6, 5))]) == 0  # unreadable: skipped
    assert ledger.outbox_marks(["b1"]) == {"b1": 6}
    assert ledger.apply_stream(rows(21, base=20, box="b2")) == 1  # its first 20: not here
    assert ledger.outbox_marks(["b2"]) == {"b2": 21}
    frames = [r.data["frames_decoded"] for r in ledger.rows(S)]
    assert frames == [1, 2, 3, 4, 5, 21]
    assert check_chain(list(ledger.rows(S)), S).ok
    ledger.close()


def test_heartbeats_an_edge_sends_after_its_node_was_counted_lost_extend_the_connection(
    tmp_path,
):
    """The ledger writer closes a dead edge's connections (node_lost) at the last evidence it
    had. If the edge comes back and sends heartbeats it had acknowledged before it died, the
    member is credited up to them, as if they had come in time; any other leave is final."""
    from server.attendance.report import ReportFold

    t = 1_000_000
    beats = [
        (t + 10_000 * i, Heartbeat("p1", 30 * i, True, True, 100 + i, 50 + i)) for i in (1, 2, 3)
    ]
    results = {}
    for name, order in (
        ("in time", [*beats, (t + 30_000, Leave("p1", "node_lost"))]),
        ("late", [beats[0], (t + 10_000, Leave("p1", "node_lost")), *beats[1:]]),
        ("after a delete", [beats[0], (t + 10_000, Leave("p1", "delete")), *beats[1:]]),
    ):
        ledger = Ledger(tmp_path / f"{name}.sqlite3")
        ledger.append_now(S, Start("pub"), t)
        ledger.append_now(S, Join("member:1", "p1", "token", "127.0.0.1", False), t + 100)
        for at, event in order:
            ledger.append_now(S, event, at)
        report = ReportFold(S).feed(ledger.scan(S)).report()
        person = report.participants["member:1"]
        results[name] = (person.seconds_watched, person.last_leave_ms, report.concurrency)
        ledger.close()
    # the chart of viewers over time ends where the credit does
    in_time = (29.9, t + 30_000, [(t + 100, 1), (t + 30_000, 0)])
    assert results["late"] == results["in time"] == in_time
    assert results["after a delete"] == (9.9, t + 10_000, [(t + 100, 1), (t + 10_000, 0)])


def test_a_row_states_whole_seconds_never_rounded_up():
    """57.6 s watched is stated as 57: on the network bed a member who played 57.4 s was
    credited 58 when rows rounded to the nearest second."""
    rep = ParticipantReport("p1", watched=[(0, 57_600)], replayed=[(0, 9_900)])
    row = export_row(rep)
    assert (row["seconds_watched"], row["replay_seconds"], row["total_seconds"]) == (57, 9, 67)


def test_the_head_is_signed_one_way_for_the_tracker_and_a_command(ledger, key):
    """sign_head is the one signing path (the tracker's tick and end, the CLI's own appends):
    nothing to sign before the first event, nothing again for a head already signed, and a
    final checkpoint whatever was signed before."""
    from server.attendance.signing import sign_head

    assert sign_head(key, ledger, S, 5) is None
    fill(ledger, n_beats=1)
    seq, head = ledger.head(S)
    cp = sign_head(key, ledger, S, 5)
    assert (cp.seq, cp.head, cp.at_ms, cp.final) == (seq, head, 5, False)
    assert verify(S, ledger.rows(S), [cp], key.public).ok
    assert sign_head(key, ledger, S, 6, signed=seq) is None
    final = sign_head(key, ledger, S, 7, final=True, signed=seq)
    assert final is not None and final.final and final.seq == seq
