"""The floor: a room raises a hand, the lecturer grants it, the room publishes beside the
lecture and the other rooms and phones receive it; ending the turn stops it."""

from __future__ import annotations

from tests.calls import call
from tests.client import SignallingError, publish, watch
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_forwarding import start_lecture
from tests.waiting import until


async def speak(relay, sid: str, token: str, size=(320, 180)):
    return await publish(
        relay.http,
        f"{relay.base_url}",
        sid + "?feed=speaker",
        token,
        [ToneAudioTrack(), PatternVideoTrack(*size)],
    )


async def test_granted_room_is_received_by_rooms_and_phones_and_revoking_stops_it(relay):
    links = relay.new_session()
    sid = links["session_id"]
    lecturer = links["lecturer_token"]
    room_a, room_b = links["rooms"][0], links["rooms"][1]
    member = relay.token("member", sid, "M1")
    lecture = await start_lecture(relay, links, "H264")
    base = f"/api/sessions/{sid}"
    try:
        # without the floor a room cannot publish beside the lecture
        try:
            await speak(relay, sid, room_a["token"])
        except SignallingError as exc:
            assert exc.status == 403
        else:
            raise AssertionError("a room published without the floor")

        status, body = await call(relay, "POST", f"{base}/hands", room_a["token"])
        assert (status, body["place"]) == (201, 1)
        who = body["who"]  # opaque: the floor is read by everyone of the session
        status, _ = await call(relay, "POST", f"{base}/hands", member)
        assert status == 403  # members raise hands only when the lecturer allows it
        status, _ = await call(relay, "POST", f"{base}/floor", room_a["token"], {"who": "x"})
        assert status == 403  # only the lecturer grants
        status, _ = await call(relay, "POST", f"{base}/floor", lecturer, {"who": who})
        assert status == 200
        status, state = await call(relay, "GET", f"{base}/floor", room_a["token"])
        assert state["i_have_the_floor"] and state["hands"] == []

        speaker = await speak(relay, sid, room_a["token"])
        media = relay.state.live.find(sid)
        await until(lambda: media.feed(f"speaker:{who}").live)
        status, state = await call(relay, "GET", f"{base}/floor", member)
        assert state["speakers"] == [
            {"who": who, "name": state["speakers"][0]["name"], "live": True}
        ]

        # another room and a phone receive the speaker beside the lecture
        other = await watch(
            relay.http, relay.base_url, sid + f"?feed=speaker:{who}", room_b["token"]
        )
        phone = await watch(relay.http, relay.base_url, sid + f"?feed=speaker:{who}", member)
        main = await watch(relay.http, relay.base_url, sid, room_b["token"])
        for v in (other, phone):
            stats = await v.wait_frames("video", 10, timeout=15)
            await v.wait_frames("audio", 10, timeout=15)
            assert stats.sizes == {(320, 180)}  # the room's picture, not the lecture's
        lecture_stats = await main.wait_frames("video", 10, timeout=15)
        assert lecture_stats.sizes == {(320, 240)}
        # watching the speaker is not attendance (the lecture connection is)
        assert set(relay.state.attendance.peers) == {main.resource}

        # the lecturer ends the turn: the room's publication and its viewers stop
        status, _ = await call(relay, "DELETE", f"{base}/floor/{who}", lecturer)
        assert status == 200
        assert media.feed(f"speaker:{who}") is None

        # the relay closed their connections (DTLS close_notify reaches the peers)
        await until(
            lambda: all(v.pc.connectionState in ("closed", "failed") for v in (other, phone)),
            timeout=15,
        )
        seen = other.stats["video"].frames
        await main.wait_frames("video", lecture_stats.frames + 15, timeout=15)
        assert other.stats["video"].frames == seen  # the lecture goes on, the speaker doesn't
        status, _ = await call(relay, "GET", f"{base}/floor", member)
        try:
            await speak(relay, sid, room_a["token"])
        except SignallingError as exc:
            assert exc.status == 403
        else:
            raise AssertionError("a room kept publishing after its turn ended")
        for v in (other, phone, main):
            await v.stop()
        await speaker.stop()
    finally:
        await lecture.stop()


async def test_floor_limits_and_refusals(relay):
    links = relay.new_session()
    sid = links["session_id"]
    lecturer = links["lecturer_token"]
    rooms = links["rooms"]
    base = f"/api/sessions/{sid}"
    hands = []
    for room in rooms[:3]:
        status, body = await call(relay, "POST", f"{base}/hands", room["token"])
        assert status == 201
        hands.append(body["who"])
    # raising twice keeps one place in the queue
    status, body = await call(relay, "POST", f"{base}/hands", rooms[0]["token"])
    assert body["place"] == 1
    first, second = hands[:2]
    assert (await call(relay, "POST", f"{base}/floor", lecturer, {"who": first}))[0] == 200
    status, body = await call(relay, "POST", f"{base}/floor", lecturer, {"who": second})
    assert status == 409 and "1 speaker" in body["error"]
    status, _ = await call(relay, "PATCH", f"{base}/floor", lecturer, {"max_speakers": 2})
    assert status == 200
    assert (await call(relay, "POST", f"{base}/floor", lecturer, {"who": second}))[0] == 200
    status, _ = await call(relay, "PATCH", f"{base}/floor", lecturer, {"max_speakers": 9})
    assert status == 400
    status, _ = await call(relay, "POST", f"{base}/floor", lecturer, {"who": "room:nobody"})
    assert status == 404
    # a room gives the floor back itself, but cannot end another's turn
    status, _ = await call(relay, "DELETE", f"{base}/floor/{first}", rooms[1]["token"])
    assert status == 403
    assert (await call(relay, "DELETE", f"{base}/floor/{first}", rooms[0]["token"]))[0] == 200
    # members may raise once the lecturer allows it; a lowered hand leaves the queue
    member = relay.token("member", sid, "M2")
    await call(relay, "PATCH", f"{base}/floor", lecturer, {"members_may_raise": True})
    assert (await call(relay, "POST", f"{base}/hands", member))[0] == 201
    assert (await call(relay, "DELETE", f"{base}/hands", member))[0] == 200
    status, state = await call(relay, "GET", f"{base}/floor", lecturer)
    assert [h["who"] for h in state["hands"]] == [hands[2]]
    # feeds that do not exist, and the wall only for the lecturer
    try:
        await watch(relay.http, relay.base_url, sid + "?feed=speaker:room:none", member)
    except SignallingError as exc:
        assert exc.status == 404
    else:
        raise AssertionError("watched a feed that does not exist")
    try:
        await watch(relay.http, relay.base_url, sid + f"?feed=wall:{rooms[0]['code']}", member)
    except SignallingError as exc:
        assert exc.status == 403
    else:
        raise AssertionError("a member watched a room's wall camera")


async def test_the_floor_names_rooms_and_members_without_their_codes_or_ids(relay):
    """Everyone of the session reads the floor and names its speakers' feeds: a room code
    there is one POST from that room's token and roster (issue 24, item 4)."""
    links = relay.new_session()
    sid = links["session_id"]
    lecturer = links["lecturer_token"]
    room = links["rooms"][0]
    member = relay.token("member", sid, "M777")
    base = f"/api/sessions/{sid}"
    await call(relay, "PATCH", f"{base}/floor", lecturer, {"members_may_raise": True})
    assert (await call(relay, "POST", f"{base}/hands", room["token"]))[0] == 201
    status, body = await call(relay, "POST", f"{base}/hands", member)
    assert status == 201
    await call(relay, "POST", f"{base}/floor", lecturer, {"who": body["who"]})
    lecture = await start_lecture(relay, links, "H264")
    try:
        speaker = await speak(relay, sid, member)
        media = relay.state.live.find(sid)
        await until(lambda: any(f.live for f in media.feeds.values()))
        for token in (links["viewer_token"], member, room["token"], lecturer):
            status, state = await call(relay, "GET", f"{base}/floor", token)
            assert status == 200
            text = str(state)
            assert room["code"] not in text and "M777" not in text, state
            assert len(state["hands"]) + len(state["speakers"]) == 2
        assert not [name for name in media.feeds if room["code"] in name or "M777" in name]
        await speaker.stop()
    finally:
        await lecture.stop()
