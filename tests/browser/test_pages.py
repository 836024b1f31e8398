"""The pages in real headless Chromium: a lecturer publishes, a phone plays, a room joins."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.conftest import on_this_machine
from tests.browser.conftest import pytestmark as browser_only
from tests.waiting import until

pytestmark = [browser_only, pytest.mark.browser, on_this_machine]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

# The widths the lecturer page is encoding now: its publication and its low copy.
SENT_WIDTHS = """async () => {
  const width = async (pub) => {
    let w = 0;
    if (pub) (await pub.pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") w = s.frameWidth || 0;
    });
    return w;
  };
  const s = window.relayState;
  return [await width(s.pub), await width(s.low)];
}"""

FRAMES_DECODED = """async () => {
  const p = window.relayState;
  if (!p || !p.view) return 0;
  let n = 0;
  (await p.view.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
  });
  return n;
}"""


async def wait_js(
    page, expression: str, arg=None, timeout: float = 30000, polling: float = 100
) -> object:
    """Wait until ``expression`` (or the function it names, called with ``arg``) is true in
    the page. Playwright's wait_for_function evaluates a string with eval, which the pages'
    Content-Security-Policy forbids; page.evaluate goes through the debugger and is allowed."""
    return await until(
        lambda: page.evaluate(expression, arg),
        timeout=timeout / 1000,
        interval=polling / 1000,
        what=f"page never showed {expression[:80]}",
    )


async def shows(page, element: str, text: str, timeout_ms: int = 15000) -> None:
    """Wait until the page's element ``element`` (an id) has ``text`` in what it shows."""
    await wait_js(
        page,
        "([id, text]) => (document.getElementById(id)?.textContent || '').includes(text)",
        arg=[element, text],
        timeout=timeout_ms,
    )


async def open_lecturer(browser, links):
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(links["urls"]["lecturer"])
    await page.click("#camera")
    await wait_js(page, "document.getElementById('preview').videoWidth > 0", timeout=15000)
    await page.click("#go")
    await wait_js(
        page,
        "window.relayState.pub && window.relayState.pub.pc.connectionState === 'connected'",
        timeout=15000,
    )
    return page


async def test_lecturer_publishes_and_a_phone_plays_it(relay, browser, artifacts):
    from server.store import Member

    links = relay.new_session("不忘初心 牢记使命（浏览器测试）")
    relay.state.store.upsert_members([Member("LC0100", "陈二", "汪营镇")])
    lecturer = await open_lecturer(browser, links)
    phone_ctx = await browser.new_context(**PHONE)
    phone = await phone_ctx.new_page()
    await phone.goto(links["urls"]["watch"])  # the open link: the member identifies first
    await phone.fill("#mid", "LC0100")
    await phone.fill("#mname", "陈二")
    await phone.screenshot(path=str(artifacts / "watch-identify.png"))
    await phone.click("#identify button[type=submit]")
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    first = await phone.evaluate(FRAMES_DECODED)
    await wait_js(phone, f"({FRAMES_DECODED})().then(n => n > {first} + 10)", timeout=15000)
    media = relay.state.live.find(links["session_id"])
    assert media.video.packets_out > 0 and len(media.viewers) == 1
    # the lecturer page also publishes its low copy, for viewers on weak networks
    await until(
        lambda: media.low_layer() is not None and media.low_layer().packets_in >= 30,
        15,
        0.2,
        "no low copy from the lecturer page",
    )
    # moved to the low copy and back (as the relay does on a weak link), the phone's picture
    # goes to half size and back on the same connection
    (viewer,) = media.viewers.values()

    async def phone_shows(layer: str) -> None:
        """The phone's picture has the width the lecturer page is sending on that layer now
        (Chrome may scale either down under load, so the widths are read, not assumed)."""
        last: list = []

        async def shown() -> bool:
            high, low = await lecturer.evaluate(SENT_WIDTHS)
            seen = await phone.evaluate("document.getElementById('video').videoWidth")
            last[:] = [layer, high, low, seen]
            return bool(low and high and low < high and seen == (low if layer == "low" else high))

        try:
            await until(shown, 15, 0.2)
        except AssertionError:
            raise AssertionError(last) from None

    viewer.set_layer("low", media.low_layer())
    await phone_shows("low")
    viewer.set_layer("high", media.low_layer())
    await phone_shows("high")
    # Where the phone refused autoplay with sound, one tap turns the sound on
    if await phone.is_visible("#unmute"):
        await phone.tap("#unmute")
        await wait_js(phone, "!document.getElementById('video').muted", timeout=5000)
    # The lecturer page shows the audience
    await wait_js(lecturer, "document.getElementById('viewers').textContent === '1'", timeout=10000)
    # and each viewer's connection quality, from the receiver reports
    await shows(lecturer, "quality", "往返", 15000)
    await lecturer.screenshot(path=str(artifacts / "lecturer.png"))
    await phone.screenshot(path=str(artifacts / "watch-phone.png"))
    # Audio only from the phone stops its video on the relay
    await phone.click("#audioonly")
    await shows(phone, "audioonly", "恢复视频", 5000)
    viewer = next(iter(media.viewers.values()))
    assert viewer.audio_only
    (ident,) = media.identities.values()
    assert (ident.participant, ident.identified_by) == ("member:LC0100", "open")
    # the page's heartbeats reach the ledger, each with the relay's own evidence beside it
    sid = links["session_id"]

    def beats():
        rows = relay.state.attendance.ledger.rows(sid)
        return [r for r in rows if r.kind == "heartbeat"]

    await until(
        lambda: any(b.data["video_rr"] >= 0 and b.data["frames_decoded"] > 0 for b in beats()),
        15,
        0.2,
        "no heartbeat with evidence",
    )
    # after the first (a POST), the page sends them over its WebSocket
    await until(
        lambda: relay.state.metrics.socket_heartbeats, 15, 0.2, "no heartbeat over the WebSocket"
    )
    assert relay.state.heartbeat_sockets_open == 1
    # "stop the broadcast" ends the publication with a DELETE, not by the DTLS close that
    # reaches the relay first when the page closes its connection before asking
    gone: list = []
    relay.state.live.listeners.append(
        lambda event: gone.append(event.reason) if event.kind == "publisher_gone" else None
    )
    await lecturer.click("#stop")
    await until(lambda: gone, 15)
    assert gone == ["delete"]
    # the lecturer ends the lecture and is shown the receipt
    lecturer.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await lecturer.click("#end")
    await lecturer.wait_for_selector("#receipt:not([hidden])", timeout=10000)
    assert relay.state.attendance.key.fingerprint in await lecturer.inner_text("#receipttext")
    await lecturer.screenshot(path=str(artifacts / "lecturer-ended.png"), full_page=True)


async def test_room_joins_by_code_reports_headcount_and_checks_members_in(
    relay, browser, artifacts
):
    from server.store import Member

    links = relay.new_session("乡镇教室测试")
    room = links["rooms"][3]
    relay.state.store.upsert_members(
        [Member("LC0001", "赵六", room["name"]), Member("LC0002", "孙七", room["name"])]
    )
    await open_lecturer(browser, links)
    ctx = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await ctx.new_page()
    await page.goto(links["urls"]["room_join"])
    await page.fill("#code", room["code"])
    await page.click("#join button")
    await wait_js(page, "document.getElementById('video').videoWidth > 0", timeout=20000)
    assert room["name"] in await page.inner_text("#roomname")
    await page.fill("#count", "37")
    await page.click("#report")
    await shows(page, "status", "37", 5000)
    assert relay.state.store.latest_headcounts(links["session_id"]) == {room["code"]: 37}
    await page.fill("#member", "LC0001")
    await page.click("#checkin")
    await shows(page, "checkins", "赵六", 5000)
    await page.fill("#member", "NOPE")
    await page.click("#checkin")
    await shows(page, "status", "花名册", 5000)
    # a member without their id: found by name in the township's roster, checked in from the list
    await page.fill("#find", "孙")
    await shows(page, "found", "孙七", 5000)
    await page.click("#found button")
    await shows(page, "checkins", "孙七", 5000)
    assert await page.inner_text("#checked") == "已签到 2 人"
    await page.reload()  # the operator reloads: the list comes back from the relay's record
    await wait_js(
        page, "document.getElementById('checked').textContent === '已签到 2 人'", timeout=10000
    )
    assert "赵六" in await page.inner_text("#checkins")
    kinds = [r.kind for r in relay.state.attendance.ledger.rows(links["session_id"])]
    assert kinds.count("checkin") == 2 and kinds.count("headcount") == 1
    await page.screenshot(path=str(artifacts / "room.png"))


async def test_a_member_is_remembered_on_the_phone_and_sees_their_own_time(
    relay, browser, artifacts
):
    """Identified once on the open link, a member who reloads goes straight back to the
    lecture; the page shows their own record, and when the lecture ends, its verdict."""
    from server.store import Member

    links = relay.new_session("我的本场学习（浏览器测试）")
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("LC0200", "周三", "团堡镇")])
    lecturer = await open_lecturer(browser, links)
    phone = await (await browser.new_context(**PHONE)).new_page()
    await phone.goto(links["urls"]["watch"])
    await phone.fill("#mid", "LC0200")
    await phone.fill("#mname", "周三")
    await phone.click("#identify button[type=submit]")
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    await shows(phone, "minewho", "周三（LC0200）")
    await shows(phone, "minetime", "本场已计学习时长")
    # the count starts on the card soon after joining, not at the next two-minute ask
    await wait_js(
        phone,
        "/本场已计学习时长：[1-9]/.test(document.getElementById('minetime').textContent)",
        timeout=20000,
    )

    def joins() -> list:
        rows = relay.state.attendance.ledger.rows(sid)
        return [(r.data["participant"], r.data["identified_by"]) for r in rows if r.kind == "join"]

    # joined once the relay has seen media reach the page (its receiver reports), which can
    # come after the first picture: a page gone before that never joined
    await until(lambda: len(joins()) == 1, 15, 0.2, "no first join")
    # reloaded, the page asks nothing and plays again, as the same member
    await phone.reload()
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    assert await phone.is_hidden("#identify")
    await shows(phone, "minewho", "周三（LC0200）")
    await until(lambda: len(joins()) == 2, 15, 0.2, "no second join")
    assert joins() == [("member:LC0200", "open")] * 2
    member = {"Authorization": f"Bearer {relay.token('member', sid, 'LC0200')}"}

    async def record() -> dict:
        async with relay.http.get(f"{relay.base_url}/api/sessions/{sid}/me", headers=member) as r:
            return await r.json()

    async def watched() -> bool:
        return (await record())["seconds_watched"] > 0

    await until(watched, 20, 0.5, "no watched time on evidence")
    # the lecture ends: the page shows whether it counts, as the member's record says
    lecturer.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await lecturer.click("#end")
    await shows(phone, "status", "讲座已结束", 20000)
    await shows(phone, "minetime", "本场学习", 20000)
    assert await phone.is_hidden("#audioonly")
    final = await record()
    assert final["lecture"]["ended"] and final["seconds_watched"] > 0
    verdict = await phone.inner_text("#minetime")
    assert ("，计入学时" in verdict) == final["credited"], (verdict, final)
    await phone.screenshot(path=str(artifacts / "watch-my-record.png"), full_page=True)
    # someone else on this phone: "not me" forgets the member and asks again
    await phone.click("#forget")
    await phone.wait_for_selector("#identify:not([hidden])", timeout=10000)


async def test_phone_rejoins_by_itself_when_the_relay_drops_it(relay, browser, artifacts):
    links = relay.new_session("断线重连测试")
    await open_lecturer(browser, links)
    ctx = await browser.new_context(**PHONE)
    phone = await ctx.new_page()
    await phone.goto(links["urls"]["watch"])
    await phone.click("#skip")  # watch without identifying
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    media = relay.state.live.find(links["session_id"])
    (old_id,) = media.viewers
    await phone.evaluate("window.oldView = window.relayState.view")
    await media.stop_peer(old_id)  # the relay ends this viewer (DTLS close) without the page
    await wait_js(
        phone,
        "window.relayState.rejoins >= 1 && window.relayState.view !== window.oldView"
        " && window.relayState.view.pc.connectionState === 'connected'",
        timeout=30000,
    )
    assert len(media.viewers) == 1 and old_id not in media.viewers
    first = await phone.evaluate(FRAMES_DECODED)
    await wait_js(phone, f"({FRAMES_DECODED})().then(n => n > {first} + 10)", timeout=15000)
    sid = links["session_id"]
    # a network change: the page joins again and ends the connection it replaces itself
    (second_id,) = media.viewers
    rejoins = await phone.evaluate("window.relayState.rejoins")
    await wait_js(
        phone,
        f"(window.dispatchEvent(new Event('online')), window.relayState.rejoins > {rejoins})",
        polling=500,
        timeout=15000,
    )
    assert await left(relay, sid, second_id) == "delete"
    third_id = await joined(media, second_id)
    # the page goes away: its connection ends at once, by a DELETE that outlives the page
    await phone.close()
    assert await left(relay, sid, third_id) == "delete"
    assert not media.viewers


async def test_phone_opened_before_the_lecture_waits_and_plays_when_it_begins(
    relay, browser, artifacts
):
    links = relay.new_session("提前进入测试")
    sid = links["session_id"]
    ctx = await browser.new_context(**PHONE)
    phone = await ctx.new_page()
    beats: list[str] = []
    phone.on("request", lambda r: beats.append(r.url) if "heartbeat" in r.url else None)
    phone.on("websocket", lambda ws: beats.append(ws.url))
    await phone.goto(links["urls"]["watch"])
    await phone.click("#skip")
    # joined, and told so, though nothing plays yet
    await shows(phone, "status", "开始直播后将自动播放", 15000)
    media = await until(lambda: relay.state.live.find(sid), 15)
    (early,) = await until(lambda: list(media.viewers), 15)
    # the connection drops before the lecture begins: the page joins again by itself
    await media.stop_peer(early)
    await until(lambda: media.viewers and early not in media.viewers, 30, 0.2, "no re-join")
    await shows(phone, "status", "开始直播后将自动播放", 15000)
    # with nothing played, the page had nothing to report (heartbeats every second here)
    assert beats == []
    await open_lecturer(browser, links)
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    await shows(phone, "status", "正在观看", 15000)
    await until(lambda: beats, 15, 0.2, "no heartbeat once the lecture plays")
    await phone.screenshot(path=str(artifacts / "watch-early-then-live.png"))


async def test_phone_waits_through_a_pause_by_the_lecturer_on_its_own_connection(
    relay, browser, artifacts
):
    """The lecturer stops the broadcast a while: phones say so and keep their connections
    (4,000 joining again at once would only wait there all the same); media resumes on them."""
    links = relay.new_session("暂停测试")
    lecturer = await open_lecturer(browser, links)
    ctx = await browser.new_context(**PHONE)
    phone = await ctx.new_page()
    await phone.goto(links["urls"]["watch"])
    await phone.click("#skip")
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    media = relay.state.live.find(links["session_id"])
    (viewer,) = media.viewers
    await lecturer.click("#stop")
    await shows(lecturer, "status", "已暂停推流", 10000)
    await shows(phone, "status", "暂停", 20000)
    assert await phone.evaluate("window.relayState.rejoins") == 0
    await phone.screenshot(path=str(artifacts / "watch-paused.png"))
    await lecturer.click("#go")
    first = await phone.evaluate(FRAMES_DECODED)
    await wait_js(phone, f"({FRAMES_DECODED})().then(n => n > {first} + 10)", timeout=20000)
    await shows(phone, "status", "正在观看", 10000)
    assert await phone.evaluate("window.relayState.rejoins") == 0
    assert list(media.viewers) == [viewer]


async def left(relay, sid: str, peer: str) -> str:
    """The reason of ``peer``'s leave once it is in the ledger, waited for 15 s at most: a
    page that vanished without a word is noticed only when ICE consent lapses, ~30 s on."""

    async def reason() -> str | None:
        rows = relay.state.attendance.ledger.rows(sid)
        return next(
            (r.data["reason"] for r in rows if r.kind == "leave" and r.data["peer"] == peer), None
        )

    return await until(reason, timeout=15)


async def joined(media, previous: str) -> str:
    """The viewer connection that replaced ``previous`` (waited for 15 s at most)."""

    async def fresh() -> str | None:
        if previous in media.viewers:
            return None
        return next((peer for peer in media.viewers if peer != previous), None)

    return await until(fresh, timeout=15)


async def test_audit_page_draws_its_chart_tables_and_receipt(relay, browser, artifacts):
    from server.attendance.events import Checkin, End, Headcount, Heartbeat, Join, Leave, Start
    from server.store import TOWNSHIPS, Member

    links = relay.new_session("审计页面测试")
    sid = links["session_id"]
    store = relay.state.store
    store.upsert_members(
        [Member(f"A{i:03d}", f"党员{i}", TOWNSHIPS[i % 3], "13900000000") for i in range(30)]
    )
    att = relay.state.attendance
    room = links["rooms"][0]
    t = 1_700_000_000_000
    await att.ledger.append(sid, Start("pub"), t - 1000)
    events = []
    for i in range(12):
        peer = f"p{i}"
        events.append((Join(f"member:A{i:03d}", peer, "token", "127.0.0.1", False), t + i * 5000))
        for k in range(1, 8):
            beat = Heartbeat(peer, k * 250, True, True, k * 300, k * 50)
            events.append((beat, t + i * 5000 + k * 10_000))
        events.append((Leave(peer, "delete"), t + i * 5000 + 75_000))
    events.append((Join(f"room:{room['code']}", "roomconn", "token", "127.0.0.1", False), t))
    events.append((Headcount(room["code"], 1), t + 1000))
    events.append((Checkin(room["code"], "A020"), t + 2000))
    events.append((Checkin(room["code"], "A021"), t + 3000))
    for event, at in sorted(events, key=lambda e: e[1]):
        await att.ledger.append(sid, event, at)
    admin = relay.token("admin", None, "组织部")
    ctx = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await ctx.new_page()
    # read while the lecture is under way, the page says as of when
    await page.goto(f"{relay.base_url}/audit?session={sid}&token={admin}")
    await shows(page, "status", "讲座进行中：以下为截至", 10000)
    assert await page.inner_text("#receipt") == "讲座尚未结束，暂无最终回执。"
    await att.ledger.append(sid, End("lecturer"), t + 140_000)
    await att.checkpoint(sid, final=True)
    await page.reload()
    await shows(page, "status", "记录完整", 10000)
    # its own reading (an export event) is signed at once: nothing left to sign
    assert await page.inner_text("#status") == "记录完整，签名有效。"
    assert await page.inner_text("#participants") == "15"  # 12 phones, a room, 2 checked in
    assert await page.inner_text("#length") == "2 分钟"
    # a row a township with members or a classroom of the lecture (its 15 schools)
    assert await page.locator("#townships tbody tr").count() == 15
    assert "多于报到人数" in await page.inner_text("#rooms")
    assert await page.locator("#qr svg").count() == 1
    red = await page.evaluate(
        """() => {
          const c = document.getElementById('chart');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 60) n++;
          return n;
        }"""
    )
    assert red > 100  # the line of viewers over time was drawn
    await page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
    kinds = [r.kind for r in att.ledger.rows(sid)]
    assert kinds[-1] == "export"  # reading names of absentees is recorded


async def test_admin_page_changes_the_credit_rule_and_the_audit_page_shows_it(
    relay, browser, artifacts
):
    from server.attendance.events import End, Heartbeat, Join, Start
    from server.store import Member

    links = relay.new_session("认定标准测试")
    sid = links["session_id"]
    relay.state.store.upsert_members(
        [Member("B1", "七成", "团堡镇"), Member("B2", "九成", "团堡镇")]
    )
    ledger = relay.state.attendance.ledger
    t = 1_700_000_000_000
    await ledger.append(sid, Start("pub"), t)
    for member, beats in (("B1", 7), ("B2", 9)):  # 70 s and 90 s of a 100 s lecture
        await ledger.append(sid, Join(f"member:{member}", member, "token", "127.0.0.1", False), t)
        for k in range(1, beats + 1):
            await ledger.append(
                sid, Heartbeat(member, k * 250, True, True, k * 90, k * 50), t + k * 10_000
            )
    await ledger.append(sid, End("lecturer"), t + 100_000)
    admin = relay.token("admin", None, "组织部")
    gone = relay.new_session("主讲人已离开")  # started, never ended, nothing arriving
    relay.state.store.set_status(gone["session_id"], "live")
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(f"{relay.base_url}/admin?token={admin}")
    await shows(page, "sessions", "主讲人已离开")
    row = page.locator("#sessions tbody tr", has_text="主讲人已离开")
    assert "已开始 · 主讲人未推流" in await row.inner_text()
    share = page.locator("#sessions tbody tr", has_text="认定标准测试").locator(
        "button", has_text="满 80%"
    )
    answers = iter(["60", None])  # the prompt's answer, then the confirmation

    async def answer(dialog) -> None:
        text = next(answers)
        await (dialog.accept(text) if text else dialog.accept())

    page.on("dialog", lambda dialog: asyncio.ensure_future(answer(dialog)))
    await share.click()
    await shows(page, "status", "已修改：认定标准测试 · 满 60%")
    await shows(page, "sessions", "满 60%")
    assert [r.data["threshold_percent"] for r in ledger.rows(sid) if r.kind == "policy"] == [60]
    audit = await (await browser.new_context(viewport={"width": 1200, "height": 900})).new_page()
    await audit.goto(f"{relay.base_url}/audit?session={sid}&token={admin}")
    await shows(audit, "status", "记录完整", 10000)
    assert await audit.inner_text("#rule") == "满 60% · 回放计入"
    assert "组织部 设为满 60% · 回放计入" in await audit.inner_text("#rulechanges")
    assert await audit.inner_text("#credited") == "2"  # 70 s of 100 now counts
    await audit.screenshot(path=str(artifacts / "audit-rule-changed.png"), full_page=True)


async def test_phone_plays_the_replay_and_seeks(relay, browser, artifacts):
    from tests.test_replay import ended_with_replay

    links, _ = await ended_with_replay(relay, "VP8", 120)
    sid = links["session_id"]
    member = relay.token("member", sid, "RPL1")
    ctx = await browser.new_context(**PHONE)
    page = await ctx.new_page()
    await page.goto(f"{relay.base_url}/replay?session={sid}&token={member}")
    await wait_js(page, "window.relayReplay.video.readyState >= 1", timeout=15000)
    await page.tap("#play")
    await wait_js(page, "window.relayReplay.video.currentTime > 0.5", timeout=15000)
    await page.evaluate("window.relayReplay.video.currentTime = 0.2")
    await wait_js(
        page,
        "window.relayReplay.video.currentTime < 1.0 && !window.relayReplay.video.seeking",
        timeout=10000,
    )
    await wait_js(page, "window.relayReplay.reports >= 2", timeout=15000)
    await page.screenshot(path=str(artifacts / "replay-phone.png"))
    kinds = [r.kind for r in relay.state.attendance.ledger.rows(sid)]
    assert kinds.count("replay") >= 2


async def test_admin_page_shows_replays_and_disk(relay, browser, artifacts):
    from tests.test_replay import ended_with_replay

    await ended_with_replay(relay, "VP8", 30)
    admin = relay.token("admin", None, "组织部")
    ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await ctx.new_page()
    await page.goto(f"{relay.base_url}/admin?token={admin}")
    await shows(page, "sessions", "已生成", 10000)
    # the attendance ledger's health, for an admin without a metrics system
    await shows(page, "ledger", "落盘用时", 10000)
    ledger = await page.inner_text("#ledger")
    assert "考勤账本（本次启动以来）：已记录" in ledger and "99% 的记录" in ledger, ledger
    await page.fill("#title", "新讲座（管理页创建）")
    await page.click("#create button")
    await page.wait_for_selector("#created:not([hidden])", timeout=5000)
    assert "教室码" in await page.inner_text("#created")
    await page.screenshot(path=str(artifacts / "admin.png"), full_page=True)


async def test_assigned_training_walks_from_task_to_session_through_the_pages(
    relay, browser, artifacts
):
    from server.programme.store import school_id
    from server.store import TOWNSHIPS

    prog = relay.state.programme
    (tid,) = prog.add_teachers([("向明", "利川市委党校", "city", "city", ("党史",), "139")])
    prog.add_courses(
        [
            (
                "学习全会精神",
                "理论学习",
                2,
                "",
                [tid],
                [{"question": "全会召开于？", "options": ["2024年", "2025年"], "answer": 1}],
            )
        ]
    )
    admin = relay.token("admin", None, "组织部")
    school = relay.token("school", None, school_id(TOWNSHIPS.index("团堡镇")))
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    dept = await ctx.new_page()
    await dept.goto(f"{relay.base_url}/programme?token={admin}")
    await dept.fill("#theme", "冬训：学习全会精神")
    await dept.fill("#from", "2026-12-01")
    await dept.fill("#to", "2026-12-31")
    await dept.click("#task button")
    await shows(dept, "tasks", "冬训", 5000)

    town = await ctx.new_page()
    await town.goto(f"{relay.base_url}/school?token={school}")
    await shows(town, "title", "团堡镇", 5000)
    await town.click(".file-task")
    await town.fill("#starts", "2026-12-05T09:00")
    await town.fill("#ends", "2026-12-05T11:00")
    await town.click("#submit")
    await shows(town, "mine", "待审批", 5000)
    await town.screenshot(path=str(artifacts / "school.png"), full_page=True)

    await dept.reload()
    await dept.click("button.approve")
    await dept.wait_for_selector("#approved:not([hidden])", timeout=5000)
    assert "讲座已创建" in await dept.inner_text("#approved")
    await dept.screenshot(path=str(artifacts / "programme.png"), full_page=True)
    (training,) = prog.trainings()
    assert training.state == "approved" and training.session_id

    # a member gives feedback from the phone watch page of that session
    sid = training.session_id
    member = relay.token("member", sid, "LC0900001")
    phone = await (await browser.new_context(**PHONE)).new_page()
    await phone.goto(f"{relay.base_url}/watch?session={sid}&token={member}")
    await phone.click("#feedback summary")
    await phone.click("button[data-rating='5']")
    await phone.check("input[name=q0][value='1']")
    await phone.fill("#fbcomment", "联系实际，很受用")
    await phone.click("#feedback button[type=submit]")
    await shows(phone, "fbstatus", "100%", 5000)
    await phone.screenshot(path=str(artifacts / "feedback-phone.png"), full_page=True)
    (fb,) = prog.feedback([sid])
    assert fb["rating"] == 5 and fb["score"] == 1.0 and fb["participant"] == "member:LC0900001"


async def test_member_asks_on_the_phone_and_the_lecturer_answers(relay, browser, artifacts):
    from server.store import Member

    links = relay.new_session("问答测试")
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("QA01", "李问", "团堡镇")])
    lecturer = await open_lecturer(browser, links)
    phone = await (await browser.new_context(**PHONE)).new_page()
    await phone.goto(
        f"{relay.base_url}/watch?session={sid}&token={relay.token('member', sid, 'QA01')}"
    )
    await phone.fill("#asktext", "补贴政策什么时候落实？")
    await phone.click("#askform button")
    await shows(lecturer, "modlist", "补贴政策", 10000)
    lecturer.once("dialog", lambda d: asyncio.ensure_future(d.accept("本月底前落实")))
    await lecturer.click("#modlist button[data-action='answer']")
    await shows(phone, "qlist", "本月底前落实", 10000)
    await phone.screenshot(path=str(artifacts / "qa-phone.png"), full_page=True)
    await lecturer.screenshot(path=str(artifacts / "qa-lecturer.png"), full_page=True)
    kinds = [r.kind for r in relay.state.attendance.ledger.rows(sid)]
    assert "question" in kinds and "moderation" in kinds


async def test_a_room_raises_a_hand_the_lecturer_grants_it_the_other_room_sees_it(
    relay, browser, artifacts
):
    links = relay.new_session("举手发言测试")
    lecturer = await open_lecturer(browser, links)
    room_a, room_b = links["rooms"][0], links["rooms"][1]
    pages = []
    for room in (room_a, room_b):
        ctx = await browser.new_context(viewport={"width": 1280, "height": 720})
        page = await ctx.new_page()
        await page.goto(room["url"])
        await wait_js(page, "document.getElementById('video').videoWidth > 0", timeout=20000)
        pages.append(page)
    speaking, listening = pages
    # the lecturer's wall shows each room's own small camera
    await wait_js(
        lecturer,
        f'(() => {{ const v = document.querySelector(\'#wall figure[data-code="{room_a["code"]}"]'
        " video'); return v && v.videoWidth > 0; })()",
        timeout=20000,
    )
    await speaking.click("#raise-hand")
    await wait_js(
        speaking,
        "document.querySelector('#floorbox .status').textContent.includes('排第 1 位')",
        timeout=5000,
    )
    await lecturer.wait_for_selector("#hands button.grant", timeout=5000)
    await lecturer.screenshot(path=str(artifacts / "lecturer-hands.png"))
    await lecturer.click("#hands button.grant")
    await wait_js(
        speaking,
        "document.querySelector('#floorbox .status').textContent.includes('正在发言')",
        timeout=10000,
    )
    playing = (
        "(() => { const v = document.querySelector('#speakers video');"
        " return v && v.videoWidth > 0; })()"
    )
    await wait_js(listening, playing, timeout=20000)
    await wait_js(lecturer, playing, timeout=20000)
    caption = await listening.inner_text("#speakers figcaption")
    assert room_a["name"] in caption and "发言中" in caption
    await listening.screenshot(path=str(artifacts / "room-sees-speaker.png"), full_page=True)
    await lecturer.screenshot(path=str(artifacts / "lecturer-speaker.png"), full_page=True)
    # the lecturer ends the turn: the speaker's tile goes away on the other room's page
    await lecturer.click("#hands button.end-turn")
    await wait_js(listening, "document.querySelector('#speakers video') === null", timeout=10000)
    media = relay.state.live.find(links["session_id"])
    assert not [name for name in media.feeds if name.startswith("speaker:")]


async def test_every_page_opens_clean(relay, browser, artifacts):
    """Each page, opened with its link, loads without a script error, a console error or a
    failed request, and names the product's icon (served, as browsers also ask for it at
    /favicon.ico by themselves)."""
    links = relay.new_session("页面检查")
    sid = links["session_id"]
    admin = relay.token("admin", None, "组织部")
    pages = {
        "lecturer": links["urls"]["lecturer"],
        "watch": links["urls"]["watch"],
        "room": links["rooms"][0]["url"],
        "audit": f"{relay.base_url}/audit?session={sid}&token={admin}",
        "admin": f"{relay.base_url}/admin?token={admin}",
        "programme": f"{relay.base_url}/programme?token={admin}",
        "index": f"{relay.base_url}/",
    }
    context = await browser.new_context()
    for name, url in pages.items():
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e, problems=problems: problems.append(f"error {e}"))
        page.on(
            "console",
            lambda m, problems=problems: (
                problems.append(f"console {m.text}") if m.type == "error" else None
            ),
        )
        page.on(
            "response",
            lambda r, problems=problems: (
                problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
            ),
        )
        await page.goto(url)
        await page.wait_for_load_state("networkidle")
        icon = await page.evaluate("document.querySelector('link[rel=icon]')?.href")
        assert (name, problems, icon) == (name, [], f"{relay.base_url}/favicon.ico")
        await page.close()
    async with relay.http.get(f"{relay.base_url}/favicon.ico") as resp:
        assert (resp.status, resp.content_type) == (200, "image/svg+xml")
        assert b"<svg" in await resp.read()


async def test_admin_page_hands_out_personal_links_and_ends_a_lecture_left_running(
    relay, browser, artifacts
):
    """The organisation department downloads each member's personal link from the page (an
    export in the ledger), and ends a lecture whose lecturer left without ending it."""
    import io

    from openpyxl import load_workbook

    from server.store import Member

    gone = relay.new_session("主讲人未结束")
    sid = gone["session_id"]
    relay.state.store.set_status(sid, "live")
    admin = relay.token("admin", None, "组织部")
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"{relay.base_url}/admin?token={admin}")
    row = page.locator("#sessions tbody tr", has_text="主讲人未结束")
    await shows(page, "sessions", "主讲人未结束")
    await row.locator("button", has_text="党员链接").click()
    await shows(page, "status", "花名册为空")  # refused, not saved as a file
    relay.state.store.upsert_members(
        [Member("K1", "链一", "团堡镇"), Member("K2", "链二", "谋道镇")]
    )
    async with page.expect_download() as info:
        await row.locator("button", has_text="党员链接").click()
    download = await info.value
    assert download.suggested_filename == "党员观看链接-主讲人未结束.xlsx"
    sheet = load_workbook(io.BytesIO((await download.path()).read_bytes()), read_only=True).active
    got = [tuple(r[:3]) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert got == [("K1", "链一", "团堡镇"), ("K2", "链二", "谋道镇")]
    await shows(page, "status", "已下载")
    # one township's members alone, for its school to send out
    await page.select_option("#linkscope", "谋道镇")
    async with page.expect_download() as info:
        await row.locator("button", has_text="党员链接").click()
    download = await info.value
    assert download.suggested_filename == "党员观看链接-主讲人未结束-谋道镇.xlsx"
    sheet = load_workbook(io.BytesIO((await download.path()).read_bytes()), read_only=True).active
    assert [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["K2"]
    await page.select_option("#linkscope", "毛坝镇")
    await row.locator("button", has_text="党员链接").click()
    await shows(page, "status", "花名册中没有毛坝镇的党员")
    await row.locator("button", has_text="结束讲座").click()
    await shows(page, "status", "已结束：主讲人未结束。签名回执：事件数")
    await shows(page, "sessions", "已结束")
    assert await row.locator("button", has_text="结束讲座").count() == 0
    rows = list(relay.state.attendance.ledger.rows(sid))
    assert [(r.kind, r.data.get("format") or r.data.get("by")) for r in rows] == [
        ("export", "links-xlsx"),
        ("export", "links-xlsx"),
        ("end", "admin"),
    ]
    assert relay.state.attendance.final_receipt(sid)["seq"] == rows[-1].seq
    await page.screenshot(path=str(artifacts / "admin-ended.png"), full_page=True)
    # its audit page: no media ever came, and it says so rather than "not begun"
    await page.goto(f"{relay.base_url}/audit?session={sid}&token={admin}")
    await shows(page, "status", "讲座未开讲即已结束")
    assert await page.inner_text("#length") == "0 秒"
