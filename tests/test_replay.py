"""After the lecture: the replay job, range requests, and replay attendance."""

from __future__ import annotations

import asyncio
import datetime

import av
import pytest

from server.attendance.report import build_report
from server.lectures.replays import ReplayState, replay_paths
from server.store import Member
from tests.test_recording import record
from tests.waiting import until


async def paced(relay) -> None:
    """Wait out the least gap between two replay progress reports of one member (half the
    pages' reporting interval): a page reports no faster, and a report sooner is refused."""
    await asyncio.sleep(relay.config.heartbeat_interval_s / 2 + 0.02)


async def ended_with_replay(relay, codec="VP8", frames=90):
    links = relay.new_session(video_codec=codec)
    sid = links["session_id"]
    pub, _, _ = await record(relay, links, codec, frames)
    await pub.stop()
    async with relay.http.post(
        f"{relay.base_url}/api/sessions/{sid}/end",
        headers={"Authorization": f"Bearer {links['lecturer_token']}"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["replay"] == "queued"

    def finished():
        job = relay.state.replays.state(sid)
        return job if job is not None and job.state in ("done", "failed") else None

    job = await until(finished, 60, 0.1, "the replay job did not finish")
    assert job.state == "done", job.error
    return links, job


async def training_replayed(relay):
    """A lecture of an approved training of a 2-hour course (linked as approval links
    them), ended and its replay made: (links, replay job, course id)."""
    prog = relay.state.programme
    (tid,) = prog.add_teachers([("向明", "市委党校", "city", "city", (), "")])
    (cid,) = prog.add_courses([("全会精神", "理论", 2, "", [tid], [])])
    links, job = await ended_with_replay(relay)
    training = prog.add_training("ordered", None, "t09", tid, cid, 0, 1, {})
    prog.decide(training, "approved", "", links["session_id"])
    return links, job, cid


async def test_replay_is_h264_aac_faststart_and_served_with_ranges(relay, tmp_path):
    links, job = await ended_with_replay(relay)
    sid = links["session_id"]
    assert job.media_seconds >= 2 and job.attempts == 1
    url = f"{relay.base_url}/replays/{sid}.mp4?token={links['viewer_token']}"
    async with relay.http.get(url, headers={"Range": "bytes=0-99"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"].startswith("bytes 0-99/")
        assert len(await resp.read()) == 100
    async with relay.http.get(url) as resp:
        assert resp.status == 200
        data = await resp.read()
    assert data.find(b"moov") < data.find(b"mdat")  # the index first: playable while loading
    path = tmp_path / "replay.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        assert {s.type: s.codec_context.name for s in c.streams} == {
            "video": "h264",
            "audio": "aac",
        }
    async with relay.http.get(url.replace(".mp4", ".jpg")) as resp:
        assert resp.status == 200 and (await resp.read())[:2] == b"\xff\xd8"
    async with relay.http.get(f"{relay.base_url}/replays/{sid}.mp4") as resp:
        assert resp.status == 401
    other = relay.new_session()
    async with relay.http.get(
        f"{relay.base_url}/replays/{sid}.mp4?token={other['viewer_token']}"
    ) as resp:
        assert resp.status == 403


async def test_h264_lectures_are_remuxed_not_transcoded(relay):
    links, job = await ended_with_replay(relay, "H264", 60)
    assert job.state == "done"
    # no video encoder ran: the replay job took a fraction of the media's length
    assert job.took_seconds < job.media_seconds


async def test_replay_progress_goes_into_the_ledger_and_the_report(relay):
    links, _ = await ended_with_replay(relay)
    sid = links["session_id"]
    member = relay.token("member", sid, "RP1")
    url = f"{relay.base_url}/api/sessions/{sid}/replay/progress"
    auth = {"Authorization": f"Bearer {member}"}
    for pos, playing in ((0.0, True), (0.5, True), (1.0, True), (1.2, False)):
        body = {"position": pos, "playing": playing, "visible": True, "view": "abc"}
        async with relay.http.post(url, json=body, headers=auth) as resp:
            assert resp.status == 200
        await paced(relay)
    async with relay.http.post(url, json={"position": -1, "view": "a"}, headers=auth) as resp:
        assert resp.status == 400
    rows = list(relay.state.attendance.ledger.rows(sid))
    assert [r.kind for r in rows].count("replay") == 4
    rep = build_report(sid, rows).participants["member:RP1"]
    assert rep.replayed and rep.replay_seconds > 0
    # the audit page counts the member as made up by replay, not absent
    relay.state.store.upsert_members([Member("RP1", "回放党员", "汪营镇")])
    admin = relay.token("admin", None)
    async with relay.http.get(
        f"{relay.base_url}/api/sessions/{sid}/audit", headers={"Authorization": f"Bearer {admin}"}
    ) as resp:
        audit = await resp.json()
    assert audit["replay_participants"] == 1 and audit["replay_seconds"] >= 1
    (town,) = [t for t in audit["townships"] if t["township"] == "汪营镇"]
    assert town["replayed"] == 1 and town["present"] == 0
    assert {"member_id": "RP1", "name": "回放党员", "replayed": True} in town["absent"]


async def test_replays_are_listed_on_the_course_and_on_the_members_own_page(relay):
    from server.store import Member

    links, _, cid = await training_replayed(relay)
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("M1", "学员", "团堡镇")])
    admin = relay.token("admin", None)
    async with relay.http.get(
        f"{relay.base_url}/api/courses/{cid}/replays", headers={"Authorization": f"Bearer {admin}"}
    ) as resp:
        listed = await resp.json()
    assert [r["session_id"] for r in listed] == [sid]
    member = relay.token("member", "another-session", "M1")  # any of the member's links
    async with relay.http.get(
        f"{relay.base_url}/api/me", headers={"Authorization": f"Bearer {member}"}
    ) as resp:
        me = await resp.json()
    assert me["name"] == "学员" and [r["session_id"] for r in me["replays"]] == [sid]
    async with relay.http.get(
        relay.base_url
        + me["replays"][0]["url"].replace("/replay?", "/api/sessions/" + sid + "/replay?")
    ) as resp:
        assert resp.status == 200  # the link's token opens that replay
    stranger = relay.token("member", None, "NOBODY")
    async with relay.http.get(
        f"{relay.base_url}/api/me", headers={"Authorization": f"Bearer {stranger}"}
    ) as resp:
        assert resp.status == 404


async def test_a_member_who_makes_up_the_lecture_by_replay_earns_its_hours(relay):
    """Replay time counts toward credit (the session's rule): the member who watched the
    replay through earns the course's hours then, not at the next change of anything."""
    links, job, _ = await training_replayed(relay)
    sid = links["session_id"]
    member = relay.token("member", sid, "RP2")
    auth = {"Authorization": f"Bearer {member}"}

    async def hours() -> float:
        async with relay.http.get(f"{relay.base_url}/api/me", headers=auth) as resp:
            return (await resp.json())["hours"] if resp.status == 200 else -1

    relay.state.store.upsert_members([Member("RP2", "补学", "团堡镇")])
    last_year = datetime.date.today().year - 1  # the page counts this year's hours
    assert relay.state.programme.add_credit("an-old-lecture", 3, "RP2", last_year)
    # half the lecture will do: its ledger's length runs a little past the recording's
    admin = {"Authorization": f"Bearer {relay.token('admin', None)}"}
    rule = f"{relay.base_url}/api/sessions/{sid}/credit-rule"
    async with relay.http.patch(rule, json={"credit_threshold": 0.5}, headers=admin) as resp:
        assert resp.status == 200
    url = f"{relay.base_url}/api/sessions/{sid}/replay/progress"
    positions = [0.0, 0.5]
    assert await hours() == 0
    # the replay played from start to end, a report every half second of media
    while positions[-1] < job.media_seconds:
        positions.append(min(positions[-1] + 0.5, job.media_seconds))
    for pos in positions:
        body = {"position": pos, "playing": True, "visible": True, "view": "v1"}
        async with relay.http.post(url, json=body, headers=auth) as resp:
            assert resp.status == 200
        await paced(relay)
    async with relay.http.get(f"{relay.base_url}/api/sessions/{sid}/me", headers=auth) as resp:
        mine = await resp.json()
    assert mine["credited"], mine
    assert await hours() == 2


async def test_replay_earns_no_hours_where_the_session_does_not_count_it(relay):
    """With replay off the session's rule, a member who watches the replay through earns
    nothing by it; when the admin turns it on after the lecture, their hours are worked out
    again and they earn them."""
    links, job, _ = await training_replayed(relay)
    sid = links["session_id"]
    auth = {"Authorization": f"Bearer {relay.token('member', sid, 'RP3')}"}
    relay.state.store.upsert_members([Member("RP3", "补学二", "团堡镇")])
    admin = {"Authorization": f"Bearer {relay.token('admin', None)}"}
    rule = f"{relay.base_url}/api/sessions/{sid}/credit-rule"
    off = {"credit_threshold": 0.5, "replay_credit": False}
    async with relay.http.patch(rule, json=off, headers=admin) as resp:
        assert resp.status == 200
    url = f"{relay.base_url}/api/sessions/{sid}/replay/progress"
    position = 0.0
    while position <= job.media_seconds:
        body = {"position": position, "playing": True, "visible": True, "view": "v1"}
        async with relay.http.post(url, json=body, headers=auth) as resp:
            assert resp.status == 200
        await paced(relay)
        position += 0.5
    assert not relay.state.programme.has_credit(sid, "RP3")
    async with relay.http.patch(rule, json={"replay_credit": True}, headers=admin) as resp:
        assert resp.status == 200
        assert (await resp.json())["credited"] == 1
    assert relay.state.programme.has_credit(sid, "RP3")


def placed_replay(relay, data: bytes = bytes(range(256)) * 4) -> tuple[str, str]:
    """A session with a replay file on disk (any bytes: the route serves files, not MP4s):
    (session id, admin token)."""
    sid = relay.new_session()["session_id"]
    folder = relay.config.media_root / "replays"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sid}.mp4").write_bytes(data)
    return sid, relay.token("admin", None)


async def test_replay_ids_with_encoded_slashes_never_reach_outside_the_replay_folder(
    relay, tmp_path
):
    from urllib.parse import quote

    from yarl import URL

    sid, admin = placed_replay(relay)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"not a replay: a file elsewhere on the server")
    beside = relay.config.media_root / "beside.jpg"  # in the data folder, above replays/
    beside.write_bytes(b"\xff\xd8 a file beside the replay folder")
    ids = [
        quote(str(outside.with_suffix("")), safe="") + ".mp4",  # %2Ftmp%2F...%2Foutside
        "..%2Fbeside.jpg",
        "..%2F..%2F" + quote(outside.parent.name, safe="") + "%2Foutside.mp4",
        f"{sid}%2F..%2F{sid}.mp4",
    ]
    for raw in ids:
        url = URL(f"{relay.base_url}/replays/{raw}?token={admin}", encoded=True)
        async with relay.http.get(url) as resp:
            body = await resp.read()
            assert resp.status == 404, (raw, resp.status)
            assert b"not a replay" not in body and b"beside" not in body
    async with relay.http.get(f"{relay.base_url}/replays/{sid}.mp4?token={admin}") as resp:
        assert resp.status == 200  # the session's own replay is still served


async def test_odd_ranges_on_a_replay_get_416_200_or_206_never_the_wrong_one(relay):
    data = bytes(range(256)) * 4
    sid, admin = placed_replay(relay, data)
    url = f"{relay.base_url}/replays/{sid}.mp4?token={admin}"
    size = len(data)
    unsatisfiable = ("bytes=-0", f"bytes={size}-", "bytes=999999999-", "bytes=999999999-1000000000")
    for rng in unsatisfiable:
        async with relay.http.get(url, headers={"Range": rng}) as resp:
            assert resp.status == 416, (rng, resp.status)
            assert resp.headers["Content-Range"] == f"bytes */{size}", rng
    whole = ("bytes=5-2", "bytes=0-1,5-6", "bytes=-1,-2", "items=0-1", "bytes=a-b", "bytes=-")
    for rng in whole:  # invalid, or several ranges: ignored, the whole file
        async with relay.http.get(url, headers={"Range": rng}) as resp:
            assert resp.status == 200, (rng, resp.status)
            assert await resp.read() == data
    parts = {
        "bytes=0-0": (0, 0),
        "bytes=-1": (size - 1, size - 1),
        f"bytes=-{size * 10}": (0, size - 1),
        "bytes=1000-99999999999999999999": (1000, size - 1),
        "bytes=10-": (10, size - 1),
    }
    for rng, (first, last) in parts.items():
        async with relay.http.get(url, headers={"Range": rng}) as resp:
            assert resp.status == 206, (rng, resp.status)
            assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{size}", rng
            assert await resp.read() == data[first : last + 1], rng


async def test_the_replay_json_gives_urls_never_a_path_on_the_servers_disk(relay):
    import asyncio

    from server.lectures.replays import run_job

    links = relay.new_session()
    sid = links["session_id"]
    media = relay.config.media_root
    (media / "recordings").mkdir(parents=True, exist_ok=True)
    (media / "recordings" / f"{sid}-1.webm").write_bytes(b"not a recording")
    job = await asyncio.to_thread(run_job, media, sid, 1)  # FFmpeg names the file it failed on
    assert job.state == "failed" and str(media) in job.error
    viewer = {"Authorization": f"Bearer {links['viewer_token']}"}
    async with relay.http.get(f"{relay.base_url}/api/sessions/{sid}/replay", headers=viewer) as r:
        text = await r.text()
        shown = await r.json()
    assert r.status == 200 and str(media) not in text and "sources" not in shown
    assert shown["state"] == "failed" and shown["recordings"] == 1
    assert f"{sid}-1.webm" in shown["error"]  # the file's name alone says which one
    admin = {"Authorization": f"Bearer {relay.token('admin', None)}"}
    async with relay.http.get(f"{relay.base_url}/api/admin/overview", headers=admin) as r:
        assert str(media) not in await r.text()

    sid2, _ = placed_replay(relay)
    (media / "replays" / f"{sid2}.json").write_text(
        f'{{"session": "{sid2}", "state": "done", "sources": ["{media}/recordings/x-1.webm"]}}'
    )
    token = relay.token("member", sid2, "M1")
    async with relay.http.get(
        f"{relay.base_url}/api/sessions/{sid2}/replay", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        text, shown = await r.text(), await r.json()
    assert str(media) not in text
    assert shown["url"] == f"/replays/{sid2}.mp4" and shown["poster"] == f"/replays/{sid2}.jpg"
    async with relay.http.get(f"{relay.base_url}{shown['url']}?token={token}") as r:
        assert r.status == 200  # the URL, with the page's token, is the file


def replay_of(relay, seconds: float) -> str:
    """A session whose replay, ``seconds`` long, is made (its state file as the job leaves
    it; progress reports read nothing else of it)."""
    sid = relay.new_session()["session_id"]
    path = replay_paths(relay.config.media_root, sid)[2]
    path.parent.mkdir(parents=True, exist_ok=True)
    ReplayState(sid, "done", 1.0, 1, media_seconds=seconds).save(path)
    return sid


async def report_progress(relay, sid, token, position, view="v1", playing=True, raw=None):
    """One progress report as the replay page sends it: (status, headers, answer)."""
    url = f"{relay.base_url}/api/sessions/{sid}/replay/progress"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = {"position": position, "playing": playing, "visible": True, "view": view}
    kwargs = {"data": raw} if raw is not None else {"json": body}
    async with relay.http.post(url, headers=headers, **kwargs) as resp:
        return resp.status, resp.headers, await resp.json()


def replay_rows(relay, sid):
    return [r for r in relay.state.attendance.ledger.rows(sid) if r.kind == "replay"]


@pytest.mark.parametrize(
    ("views", "count", "paced_out"), [(1, 61, False), (3, 61, False), (2, 8, True)]
)
async def test_a_fast_forward_client_earns_at_most_the_wall_time_it_spent(
    relay, views, count, paced_out
):
    """Reports 2 s of media apart, sent back to back (61, from one view or from three at
    once) or each view at the least gap (two views): those too soon after the member's last
    are refused (429 with Retry-After) and not recorded, and what is credited is no more
    than the wall time the client spent, however many views it had."""
    sid = replay_of(relay, 150.0)
    token = relay.token("member", sid, "FF1")
    answers: list[tuple[int, object]] = []

    async def client(view: str, offset: float) -> None:
        for i in range(count):
            status, headers, _ = await report_progress(relay, sid, token, offset + 2.0 * i, view)
            answers.append((status, headers.get("Retry-After")))
            if paced_out:
                await paced(relay)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(client(f"v{k}", 10.0 * k) for k in range(views)))
    spent = loop.time() - started
    statuses = [s for s, _ in answers]
    assert set(statuses) == {200, 429} and len(statuses) == count * views
    assert all(int(retry) >= 1 for s, retry in answers if s == 429)
    rows = replay_rows(relay, sid)
    assert len(rows) == statuses.count(200)  # the refused ones are not in the ledger
    rep = build_report(sid, rows).participants.get("member:FF1")
    earned = rep.replay_seconds if rep is not None else 0.0
    assert earned <= spent, (earned, spent)


async def test_replay_positions_out_of_range_or_not_numbers_are_refused_with_400(relay):
    """Past the file's end (beyond a second of slack: a playhead reads a little past it),
    huge, negative, NaN, Infinity, a string or a boolean: 400 with a reason, never 500, and
    nothing recorded. Within the slack a position is taken as the end."""
    sid = replay_of(relay, 10.0)
    token = relay.token("member", sid, "PR1")
    for bad in (11.5, 1e306, 10**30, -1, "5", True, None):
        status, _, body = await report_progress(relay, sid, token, bad)
        assert status == 400 and "position" in body["error"], (bad, status, body)
    for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        raw = b'{"position": %s, "playing": true, "visible": true, "view": "v1"}' % constant
        status, _, body = await report_progress(relay, sid, token, None, raw=raw)
        assert status == 400 and body["error"], (constant, status, body)
    assert replay_rows(relay, sid) == []
    status, _, _ = await report_progress(relay, sid, token, 10.6)
    assert status == 200
    assert [r.data["position_ms"] for r in replay_rows(relay, sid)] == [10_000]


async def test_the_members_page_mints_no_token_that_outlives_the_one_it_was_shown(relay):
    """``/api/me`` gives a replay link per lecture of the member's township: each link's
    token expires no later than the token the member came with (one with 120 s left gives
    none that lasts longer), and an open-link identity stays marked as one."""
    relay.state.store.upsert_members([Member("ME1", "学员", "团堡镇")])
    sids = {replay_of(relay, 30.0), replay_of(relay, 40.0)}
    signer = relay.state.signer
    for via in ("token", "open"):
        presented = signer.issue("member", "some-lecture", "ME1", 120, via=via)
        limit = signer.verify(presented).expires
        async with relay.http.get(
            f"{relay.base_url}/api/me", headers={"Authorization": f"Bearer {presented}"}
        ) as resp:
            assert resp.status == 200
            me = await resp.json()
        assert {r["session_id"] for r in me["replays"]} == sids
        for item in me["replays"]:
            token = item["url"].split("token=", 1)[1]
            claims = signer.verify(token)
            assert claims.expires <= limit, (claims.expires - limit, via)
            assert (claims.role, claims.subject, claims.via) == ("member", "ME1", via)


async def test_identifying_on_the_open_link_renews_nothing(relay):
    """A member identified on an open link whose token has 30 s left gets a member token
    that expires no later, marked as identified that way."""
    relay.state.store.upsert_members([Member("ID1", "学员", "团堡镇")])
    sid = relay.new_session()["session_id"]
    signer = relay.state.signer
    viewer = signer.issue("viewer", sid, None, 30)
    async with relay.http.post(
        f"{relay.base_url}/api/sessions/{sid}/identify",
        json={"member_id": "ID1", "name": "学员"},
        headers={"Authorization": f"Bearer {viewer}"},
    ) as resp:
        assert resp.status == 200
        claims = signer.verify((await resp.json())["token"])
    assert claims.expires <= signer.verify(viewer).expires and claims.via == "open"
