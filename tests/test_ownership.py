"""A connection is ended or changed only by whoever made it (issue 24, item 6).

Real aiortc peers on a loopback relay: a lecturer publishes, viewers of each role watch, and
each tries to end or change the others' connections.
"""

from __future__ import annotations

from server.store import TOWNSHIPS
from tests.calls import call
from tests.client import watch
from tests.test_attendance import lecture


async def delete(relay, path: str, token: str) -> int:
    async with relay.http.delete(
        relay.base_url + path, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status


async def test_a_viewer_cannot_end_the_lecture_or_anyone_elses_connection(relay):
    links = relay.new_session()
    sid = links["session_id"]
    viewer = links["viewer_token"]
    member_a = relay.token("member", sid, "M001")
    member_b = relay.token("member", sid, "M002")
    room = relay.token("room", sid, links["rooms"][0]["code"])
    pub = await lecture(relay, links)
    a = await watch(relay.http, relay.base_url, sid, member_a)
    b = await watch(relay.http, relay.base_url, sid, member_b)
    phone_1 = await watch(relay.http, relay.base_url, sid, viewer)
    phone_2 = await watch(relay.http, relay.base_url, sid, viewer)
    media = relay.state.live.find(sid)
    try:
        publisher_id = pub.location.rsplit("/", 1)[1]
        # the lecture's publication, through either path, by any viewer: refused, still live
        for token in (viewer, member_a, room):
            assert await delete(relay, f"/whep/{sid}/{publisher_id}", token) == 404
            assert await delete(relay, f"/whip/{sid}/{publisher_id}", token) == 403
        assert media.publisher is not None and media.publisher.id == publisher_id
        # one member's connection by another member, by a room, by the open link
        for token in (member_b, room, viewer):
            assert await delete(relay, a.location, token) == 403
            status, body = await call(
                relay, "POST", f"{a.location}/mode", token, {"audio_only": True}
            )
            assert status == 403 and "someone else" in body["error"]
        assert a.resource in media.viewers and not media.viewers[a.resource].audio_only
        # open-link phones share one token: each one's connection is its own id's to end
        assert await delete(relay, phone_1.location, viewer) == 200
        assert phone_1.resource not in media.viewers and phone_2.resource in media.viewers
        # the owner changes and ends its own; a lecturer may not end a viewer, an admin may
        status, _ = await call(relay, "POST", f"{a.location}/mode", member_a, {"audio_only": True})
        assert status == 200 and media.viewers[a.resource].audio_only
        assert await delete(relay, a.location, links["lecturer_token"]) == 403
        assert await delete(relay, a.location, member_a) == 200
        assert await delete(relay, b.location, relay.token("admin", None)) == 200
        assert await delete(relay, phone_2.location, relay.token("viewer", "another")) == 403
        assert await delete(relay, f"/whep/{sid}/no-such-id", viewer) == 404
        # the lecturer ends its own publication
        assert await delete(relay, pub.location, links["lecturer_token"]) == 200
        assert media.publisher is None
    finally:
        for v in (a, b, phone_1, phone_2):
            await v.stop()
        await pub.stop()


async def test_a_rooms_wall_camera_is_its_own_and_the_lecturers(relay):
    from tests.client import publish
    from tests.sources import PatternVideoTrack, ToneAudioTrack

    links = relay.new_session()
    sid = links["session_id"]
    first, second = links["rooms"][0]["code"], links["rooms"][1]["code"]
    assert len(TOWNSHIPS) >= 2
    pub = await lecture(relay, links)
    room_a = relay.token("room", sid, first)
    room_b = relay.token("room", sid, second)
    tracks = [ToneAudioTrack(), PatternVideoTrack()]
    wall_a = await publish(relay.http, relay.base_url, sid + "?feed=wall", room_a, tracks[:])
    tracks = [ToneAudioTrack(), PatternVideoTrack()]
    wall_b = await publish(relay.http, relay.base_url, sid + "?feed=wall", room_b, tracks)
    try:
        assert await delete(relay, wall_a.location, room_b) == 403
        assert await delete(relay, wall_a.location, room_a) == 200
        assert await delete(relay, wall_b.location, links["lecturer_token"]) == 200
    finally:
        await wall_a.stop()
        await wall_b.stop()
        await pub.stop()
