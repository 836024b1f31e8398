"""Disk use and the retention policy; the admin overview."""

from __future__ import annotations

import os

from server.lectures.replays import ReplayState, replay_paths
from server.retention import sweep, usage

DAY = 86400


def make(path, size=1000, age_days=0.0, now=1_000_000_000.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_recordings_go_only_after_their_replay_is_made_and_old_enough(tmp_path):
    now = 1_000_000_000.0
    old_done = make(tmp_path / "recordings" / "s1-1.webm", age_days=40, now=now)
    old_pending = make(tmp_path / "recordings" / "s2-1.webm", age_days=40, now=now)
    young_done = make(tmp_path / "recordings" / "s3-1.mkv", age_days=2, now=now)
    for sid, state in (("s1", "done"), ("s2", "failed"), ("s3", "done")):
        mp4, jpg, js = replay_paths(tmp_path, sid)
        make(mp4, 500, age_days=40 if sid == "s1" else 1, now=now)
        make(jpg, 10, age_days=40 if sid == "s1" else 1, now=now)
        ReplayState(sid, state=state).save(js)
    u = usage(tmp_path)
    assert (u.recordings, u.replays, u.recordings_bytes) == (3, 3, 3000)

    assert sweep(tmp_path, 0, 0, now) == []  # 0 keeps forever
    removed = sweep(tmp_path, 30, 0, now)
    assert removed == [old_done]
    assert old_pending.exists() and young_done.exists()

    removed = sweep(tmp_path, 0, 30, now)
    assert set(removed) == set(replay_paths(tmp_path, "s1"))
    assert replay_paths(tmp_path, "s3")[0].exists()


async def test_admin_overview_lists_sessions_replays_and_disk(relay):
    links = relay.new_session("概览")
    admin = relay.token("admin", None)
    async with relay.http.get(
        f"{relay.base_url}/api/admin/overview", headers={"Authorization": f"Bearer {admin}"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 200
    (row,) = [s for s in body["sessions"] if s["id"] == links["session_id"]]
    assert row["title"] == "概览" and row["record"] is True and row["replay"] is None
    assert body["storage"]["free_bytes"] > 0
    async with relay.http.get(
        f"{relay.base_url}/api/admin/overview",
        headers={"Authorization": f"Bearer {links['lecturer_token']}"},
    ) as resp:
        assert resp.status == 403


async def test_sessions_created_without_recording_are_not_recorded(relay):
    from tests.client import publish
    from tests.sources import clip_tracks

    admin = relay.token("admin", None)
    async with relay.http.post(
        f"{relay.base_url}/api/sessions",
        json={"title": "不录制", "record": False, "replay_credit": False},
        headers={"Authorization": f"Bearer {admin}"},
    ) as resp:
        links = await resp.json()
        assert resp.status == 201
    sid = links["session_id"]
    assert not relay.state.store.replay_credit(sid)
    pub = await publish(
        relay.http, relay.base_url, sid, links["lecturer_token"], clip_tracks(2, "vp8", 160, 120)
    )
    try:
        media = relay.state.live.find(sid)
        assert media.recorder is None and media.record_dir is None
    finally:
        await pub.stop()


async def test_the_overview_tells_a_lecture_on_air_from_one_its_lecturer_left(relay):
    """A started lecture stays live in the record until it is ended; the overview says
    whether its media arrives, so the admin page can tell that the lecturer has gone."""
    from tests.test_attendance import lecture
    from tests.waiting import until

    links = relay.new_session("在播")
    admin = {"Authorization": f"Bearer {relay.token('admin', None)}"}

    async def row() -> dict:
        async with relay.http.get(f"{relay.base_url}/api/admin/overview", headers=admin) as r:
            return next(s for s in (await r.json())["sessions"] if s["id"] == links["session_id"])

    async def shows(status: str, media: str) -> bool:
        got = await row()
        return (got["status"], got["media"]) == (status, media)

    assert await shows("scheduled", "none")
    pub = await lecture(relay, links)
    try:
        await until(lambda: shows("live", "flowing"), 15, 0.2, "the lecture never showed on air")
    finally:
        await pub.stop()
    await until(lambda: shows("live", "none"), 15, 0.2, "still on air after the lecturer left")
