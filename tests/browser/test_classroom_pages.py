"""300 classrooms on one lecture in the pages (issue 28): the lecturer's room list is a line a
township, the wall pages through 24 tiles at a time or one township's, the audit folds each
township's classrooms until opened."""

from __future__ import annotations

from server.classrooms.directory import import_file
from tests.browser.test_pages import shows, wait_js
from tests.calls import call
from tests.test_classrooms import directory_csv


async def test_300_classrooms_stay_usable_on_the_lecturer_and_audit_pages(
    relay, browser, artifacts, tmp_path
):
    path = tmp_path / "classrooms.csv"
    path.write_text(directory_csv(18))  # 15 schools, 15 bases, 270 teaching points
    assert import_file(relay.state.store, path).imported == 285
    admin = relay.token("admin", None, "组织部")
    status, links = await call(
        relay, "POST", "/api/sessions", admin, {"title": "全县三百教室", "classrooms": "all"}
    )
    assert status == 201 and len(links["rooms"]) == 300
    sid = links["session_id"]
    point = next(r for r in links["rooms"] if r["township"] == "团堡镇" and r["kind"] == "point")
    await call(relay, "POST", f"/api/sessions/{sid}/headcount", point["token"], {"count": 9})

    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    await page.goto(f"{relay.base_url}/lecturer?session={sid}&token={links['lecturer_token']}")
    await shows(page, "roomlist", "团堡镇：0/20 个教室在线 · 9 人")
    assert await page.locator("#roomlist li").count() == 15
    await wait_js(page, "() => document.querySelectorAll('#wall figure').length === 24")
    await shows(page, "wallpage", "第 1/13 页")
    await page.click("#wallnext")
    await shows(page, "wallpage", "第 2/13 页")
    await page.select_option("#walltown", "团堡镇")
    await shows(page, "wallpage", "第 1/1 页")
    await wait_js(page, "() => document.querySelectorAll('#wall figure').length === 20")
    assert "村教学点" in await page.inner_text("#wall")  # the tiles name their classrooms
    await page.screenshot(path=str(artifacts / "lecturer-300-classrooms.png"), full_page=True)

    await page.goto(f"{relay.base_url}/audit?session={sid}&token={admin}")
    await wait_js(page, "() => document.querySelectorAll('#rooms tr.group').length === 15")
    visible = (
        "() => [...document.querySelectorAll('#rooms tbody tr')].filter((r) => !r.hidden).length"
    )
    assert await page.evaluate(visible) == 15  # folded: a line a township
    await page.click("#rooms tr.group:has-text('团堡镇')")
    assert await page.evaluate(visible) == 15 + 20
    assert "9" in await page.inner_text("#rooms")
    await page.screenshot(path=str(artifacts / "audit-300-classrooms.png"), full_page=True)
    await ctx.close()
