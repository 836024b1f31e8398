"""A page of another site publishes over WHIP and plays over WHEP (issue 30): Chromium, on an
origin the relay does not serve (another port), with only standard fetch and RTCPeerConnection
calls, as a third party's player or publisher would make them. No heartbeat of ours."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.browser.conftest import on_this_machine
from tests.browser.conftest import pytestmark as browser_only
from tests.browser.test_pages import wait_js

pytestmark = [browser_only, pytest.mark.browser, on_this_machine]

THEIR_PAGE = "<!doctype html><title>another site</title><video id=v autoplay muted></video>"

# What a WHIP client and a WHEP player do (RFC 9725): POST the offer, read Location, DELETE.
STANDARD_CLIENT = """async ({ relay, sid, lecturer, viewer }) => {
  const gathered = (pc) => new Promise((done) => {
    const check = () => pc.iceGatheringState === "complete" && done();
    if (!check()) pc.addEventListener("icegatheringstatechange", check);
  });
  const exchange = async (pc, url, token) => {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` } });
    if (r.status !== 201) throw new Error(`${url}: ${r.status} ${await r.text()}`);
    const type = r.headers.get("Content-Type");
    const location = new URL(r.headers.get("Location"), url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    return { type, location };
  };
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const pub = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  for (const t of stream.getTracks()) pub.addTransceiver(t, { direction: "sendonly" });
  const whip = await exchange(pub, `${relay}/whip/${sid}`, lecturer);
  const view = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  view.addTransceiver("audio", { direction: "recvonly" });
  view.addTransceiver("video", { direction: "recvonly" });
  const shown = new MediaStream();
  document.getElementById("v").srcObject = shown;
  view.ontrack = (e) => shown.addTrack(e.track);
  const whep = await exchange(view, `${relay}/whep/${sid}`, viewer);
  window.standard = { pub, view, whip, whep, lecturer, viewer };
  return { whip: whip.type, whep: whep.type, origin: location.origin };
}"""

DECODED = """async () => {
  let n = 0;
  (await window.standard.view.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0;
  });
  return n;
}"""

HANG_UP = """async () => {
  const s = window.standard, statuses = [];
  for (const [where, token] of [[s.whep.location, s.viewer], [s.whip.location, s.lecturer]]) {
    const headers = { Authorization: `Bearer ${token}` };
    const r = await fetch(where, { method: "DELETE", headers });
    statuses.push(r.status);
  }
  return statuses;
}"""


async def test_a_page_of_another_origin_publishes_and_plays_with_only_the_standard(
    relay, browser, artifacts
):
    links = relay.new_session("跨域播放器测试")
    sid = links["session_id"]

    async def their_page(request: web.Request) -> web.Response:
        return web.Response(text=THEIR_PAGE, content_type="text/html")

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", their_page)
    app.router.add_get("/favicon.ico", no_icon)
    theirs = TestServer(app, host="127.0.0.1", port=0)
    await theirs.start_server()
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        await page.goto(f"http://127.0.0.1:{theirs.port}/")
        shown = await page.evaluate(
            STANDARD_CLIENT,
            {
                "relay": relay.base_url,
                "sid": sid,
                "lecturer": links["lecturer_token"],
                "viewer": links["viewer_token"],
            },
        )
        assert shown["origin"] != relay.base_url  # another origin: CORS or nothing
        assert shown["whip"] == shown["whep"] == "application/sdp"
        try:
            await wait_js(page, DECODED, timeout=20000)  # frames decoded: it plays
        except AssertionError:
            states = await page.evaluate(
                "() => [window.standard.pub.connectionState, window.standard.view.connectionState,"
                " window.standard.view.getTransceivers().map(t => t.currentDirection)]"
            )
            media = relay.state.live.find(sid)
            raise AssertionError(
                f"{states} live={media.live} viewers={len(media.viewers)} {problems}"
            ) from None
        media = relay.state.live.find(sid)
        assert media.publisher is not None and len(media.viewers) == 1
        await page.screenshot(path=str(artifacts / "cross-origin-player.png"))
        assert await page.evaluate(HANG_UP) == [200, 200]
        assert not media.viewers and media.publisher is None
        assert problems == []
    finally:
        await context.close()
        await theirs.close()
