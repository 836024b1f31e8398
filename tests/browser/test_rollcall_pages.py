"""A roll call (点名) in real pages (issue 28): the lecturer starts it, a phone in a phone-sized
viewport sees one large 到 button, taps it, and the lecturer's count of answers rises."""

from __future__ import annotations

import pytest

from server.store import Member
from tests.browser.conftest import on_this_machine
from tests.browser.conftest import pytestmark as browser_only
from tests.browser.test_pages import PHONE, open_lecturer, shows, wait_js
from tests.waiting import until

pytestmark = [browser_only, pytest.mark.browser, on_this_machine]


async def test_a_phone_sees_the_roll_call_taps_here_and_the_lecturer_sees_the_count(
    relay, browser, artifacts
):
    links = relay.new_session("点名测试")
    sid = links["session_id"]
    relay.state.store.upsert_members([Member("RC01", "王到", "团堡镇")])
    lecturer = await open_lecturer(browser, links)
    phone = await (await browser.new_context(**PHONE)).new_page()
    member = relay.token("member", sid, "RC01")
    await phone.goto(f"{relay.base_url}/watch?session={sid}&token={member}")
    await wait_js(phone, "document.getElementById('video').videoWidth > 0", timeout=20000)
    # a roll call is answered on a connection the relay has seen media reach
    await until(lambda: len(relay.state.attendance.peers) >= 1, 15, 0.2, "phone not joined")

    await lecturer.click("#rcstart")
    await shows(lecturer, "rcstatus", "点名中：已应答 0", 10000)
    await phone.wait_for_selector(".rollcall:not([hidden]) button.here", timeout=15000)
    box = await phone.locator("button.here").bounding_box()
    assert box["width"] >= 200 and box["height"] >= 200  # big enough for an elderly thumb
    await phone.screenshot(path=str(artifacts / "rollcall-phone-asked.png"))
    await phone.tap("button.here")
    await wait_js(
        phone,
        "() => document.querySelector('.rollcall .rc-time').textContent.includes('已应答')",
        timeout=10000,
    )
    await phone.screenshot(path=str(artifacts / "rollcall-phone-answered.png"))
    await shows(lecturer, "rcstatus", "已应答 1（党员 1", 10000)
    await lecturer.screenshot(path=str(artifacts / "rollcall-lecturer.png"), full_page=True)
    answers = [r for r in relay.state.attendance.ledger.rows(sid) if r.kind == "roll_answer"]
    assert [a.data["participant"] for a in answers] == ["member:RC01"]
