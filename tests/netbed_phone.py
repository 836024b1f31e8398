"""A phone in the network test bed: real headless Chromium on the watch page, inside the
phone's namespace (tests/netbed.py starts it there with ``ip netns exec``):

    python tests/netbed_phone.py WATCH_URL SECONDS [--handover-at S --bed ID]
                                 [--recover-at S --bed-pid PID]
                                 [--rollcall-at S --lecturer TOKEN]

Four times a second it reads the page's own getStats (video frames decoded, audio samples
played rather than concealed, freeze time), the layer the page shows and when its last
heartbeat was answered. With ``--handover-at`` the phone's address changes that many
seconds after its first frame (scripts/netbed.py's hand_over: Wi-Fi to 4G); with
``--recover-at`` the link recovers that long after the first frame (SIGUSR1 to the bed's
process). With ``--rollcall-at`` the lecturer (its token) starts a roll call that long after
the first frame, over the phone's own link, and the phone taps 到 as soon as the page shows
it. Prints one JSON line when done: the samples, summed up, and what its own record
(``/api/sessions/{id}/me``, with its member token) credits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

SAMPLE_S = 0.25
VIDEO_COUNTS = ("nacks", "plis", "lost", "received")

# What the page plays, from its own connection's getStats; summed over the connections it
# has had (a rejoin starts a new one, whose counters start at 0).
READ = """async () => {
  const p = window.relayState;
  const out = {t: Date.now(), layer: p ? p.layer : null, rejoins: p ? p.rejoins : 0,
    status: document.getElementById("status")?.textContent || "", view: null,
    frames: 0, samples: 0, concealed: 0, freezes: 0, beat: p ? p.lastBeatAt : 0};
  if (!p || !p.view) return out;
  out.view = p.view.location;
  (await p.view.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      out.frames += s.framesDecoded || 0;
      out.freezes += s.totalFreezesDuration || 0;
      out.nacks = (out.nacks || 0) + (s.nackCount || 0);
      out.plis = (out.plis || 0) + (s.pliCount || 0);
      out.lost = (out.lost || 0) + (s.packetsLost || 0);
      out.received = (out.received || 0) + (s.packetsReceived || 0);
    } else if (s.kind === "audio") {
      out.samples += s.totalSamplesReceived || 0;
      out.concealed += s.concealedSamples || 0;
      out.audio_packets = [s.packetsReceived, s.packetsLost, s.codecId];
    }
  });
  return out;
}"""

# The phone leaves once no heartbeat is on its way (what the relay recorded, the page knows of);
# when its last one was answered.
LEAVE = """async () => {
  const p = window.relayState;
  if (!p) return 0;
  for (let i = 0; i < 40 && p._beats && p._beats.unanswered; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  p.stop();
  return p.lastBeatAt || 0;
}"""


def summarize(
    samples: list[dict], opened_ms: int, handover_ms: int | None, recovered_ms: int | None = None
) -> dict:
    """Per sample, whether video advanced and whether sound played (samples not concealed);
    the seconds with each, first frame, freeze time, the recovery after a hand-over, and after
    the link recovered: when the picture moved again and when the full lecture came back."""
    views: dict = {}  # per connection, its last counters
    video_t, sound_t, played_ms, freezes = [], [], 0, 0.0
    first = None
    prev_t = None
    for s in samples:
        last = views.get(s["view"], {"frames": 0, "samples": 0, "concealed": 0, "freezes": 0})
        moved = s["frames"] > last["frames"]
        got = s["samples"] - last["samples"]  # sound: at least half of it real, not concealed
        heard = got > 0 and got - (s["concealed"] - last["concealed"]) >= got / 2
        freezes += max(0.0, s["freezes"] - last["freezes"])
        if s["view"] is not None:
            views[s["view"]] = s
        if moved:
            video_t.append(s["t"])
            first = first or s["t"]
        if heard:
            sound_t.append(s["t"])
        if prev_t is not None and (moved or heard):
            played_ms += s["t"] - prev_t
        prev_t = s["t"]
    start = first or opened_ms
    span = max(1, samples[-1]["t"] - start) / 1000 if samples else 1
    seconds = lambda ts: len({int((t - start) / 1000) for t in ts if t >= start})  # noqa: E731
    sampled = max(1, seconds([s["t"] for s in samples]))  # the seconds looked at, from the first
    out = {
        "first_frame_s": None if first is None else round((first - opened_ms) / 1000, 2),
        "span_s": round(span, 1),
        "video_share": round(seconds(video_t) / sampled, 3),
        "sound_share": round(seconds(sound_t) / sampled, 3),
        "freeze_s": round(freezes, 2),
        "played_s": round(played_ms / 1000, 1),
        "layers": _changes([(s["t"], s["layer"]) for s in samples]),
        "rejoins": samples[-1]["rejoins"] if samples else 0,
        "unexplained_freeze_s": _unexplained(samples, first),
        # the video track's own counters, summed over its connections
        **{k: sum(v.get(k) or 0 for v in views.values()) for k in VIDEO_COUNTS},
    }
    if handover_ms is not None:
        after = [t for t in video_t if t > handover_ms]
        # the first frame after the longest pause that began within 2 s of the hand-over
        pairs = zip([handover_ms, *after], after, strict=False)
        gaps = [(b - a, b) for a, b in pairs if a <= handover_ms + 2000]
        out["recovery_s"] = round((max(gaps)[1] - handover_ms) / 1000, 2) if gaps else None
    if recovered_ms is not None:
        before = [s for s in samples if s["t"] <= recovered_ms]
        out["layer_at_recovery"] = before[-1]["layer"] if before else None
        out["video_back_s"] = _after(recovered_ms, video_t, need=4)
        high = [s["t"] for s in samples if s["t"] > recovered_ms and s["layer"] == "high"]
        out["high_back_s"] = round((high[0] - recovered_ms) / 1000, 2) if high else None
    return out


def _unexplained(samples: list[dict], first: int | None) -> float:
    """The longest the picture stood still after the first frame while the page still said
    it showed video (not sound only): a frozen picture nobody explained to the member."""
    longest, still_since, frames, view = 0, None, 0, None
    for s in samples:
        if first is None or s["t"] < first:
            continue
        if s["view"] != view:  # a new connection counts from 0
            view, frames = s["view"], -1
        moved, frames = s["frames"] > frames, max(frames, s["frames"])
        if moved or s["layer"] not in ("high", "low"):
            still_since = None
            continue
        still_since = still_since or s["t"]
        longest = max(longest, s["t"] - still_since)
    return round(longest / 1000, 2)


def _after(since_ms: int, times: list[int], need: int) -> float | None:
    """Seconds from ``since_ms`` to the first of ``need`` samples in a row (one second's worth)
    with video advancing: the picture is back, not one stray frame."""
    after = [t for t in times if t > since_ms]
    for i in range(len(after) - need + 1):
        if after[i + need - 1] - after[i] <= need * SAMPLE_S * 1000 * 1.5:
            return round((after[i] - since_ms) / 1000, 2)
    return None


def _changes(series: list[tuple[int, str | None]]) -> list[tuple[int, str | None]]:
    out: list[tuple[int, str | None]] = []
    for t, v in series:
        if not out or out[-1][1] != v:
            out.append((t, v))
    return out


async def run(
    url: str,
    seconds: float,
    handover_at: float | None,
    bed: str | None,
    trace: str | None,
    recover_at: float | None = None,
    bed_pid: int | None = None,
    rollcall_at: float | None = None,
    lecturer: str | None = None,
) -> dict:
    from playwright.async_api import async_playwright

    from tests.chromium import launch

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    async with async_playwright() as pw:
        browser = await launch(pw, hosts=(urllib.parse.urlsplit(url).hostname,))
        page = await browser.new_page(
            viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
        )
        opened = int(time.time() * 1000)
        await page.goto(url)
        samples: list[dict] = []
        handover_ms = recovered_ms = called_ms = asked_ms = answered_ms = None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            s = await page.evaluate(READ)
            samples.append(s)
            first = next((x["t"] for x in samples if x["frames"] > 0), None)
            since_first = None if first is None else s["t"] - first
            if handover_at is not None and handover_ms is None and since_first is not None:
                if samples[0]["frames"] == 0 and since_first >= handover_at * 1000:
                    from netbed import hand_over

                    hand_over(bed)
                    handover_ms = int(time.time() * 1000)
            if recover_at is not None and recovered_ms is None and since_first is not None:
                if since_first >= recover_at * 1000:
                    os.kill(bed_pid, signal.SIGUSR1)  # the bed's clean profile from now on
                    recovered_ms = int(time.time() * 1000)
            if rollcall_at is not None and called_ms is None and since_first is not None:
                if since_first >= rollcall_at * 1000:
                    called_ms = int(time.time() * 1000)
                    await page.evaluate(CALL, [query["session"][0], lecturer])
            if called_ms is not None and answered_ms is None:
                here = page.locator(".rollcall:not([hidden]) button.here")
                if await here.count():
                    asked_ms = asked_ms or int(time.time() * 1000)
                    if await here.is_enabled():
                        await here.tap()
                text = await page.evaluate(ANSWERED)
                if "已应答" in text:
                    answered_ms = int(time.time() * 1000)
            await asyncio.sleep(SAMPLE_S)
        # the phone leaves (its last heartbeat already answered or never to be), then reads
        # its record
        until = await page.evaluate(LEAVE)
        record = await page.evaluate(
            """async ([session, token]) => {
              const r = await fetch(`/api/sessions/${session}/me`,
                {headers: {Authorization: `Bearer ${token}`}});
              return r.ok ? await r.json() : {status: r.status};
            }""",
            [query["session"][0], query["token"][0]],
        )
        await browser.close()
    if trace:
        Path(trace).write_text(json.dumps({"opened": opened, "samples": samples}))
    out = summarize(samples, opened, handover_ms, recovered_ms)
    # what the page played up to its last heartbeat the relay answered: the record can
    # vouch for no more (a heartbeat covers the time before it)
    upto = [s for s in samples if s["t"] <= until]
    out["played_to_last_beat_s"] = summarize(upto, opened, None)["played_s"] if upto else 0
    out["credited_s"] = record.get("seconds_watched")
    out["intervals"] = record.get("intervals")
    if called_ms is not None:  # from the call to the 到 on screen, and to the relay's yes
        out["rollcall_shown_s"] = None if asked_ms is None else (asked_ms - called_ms) / 1000
        out["rollcall_answered_s"] = (
            None if answered_ms is None else (answered_ms - called_ms) / 1000
        )
        out["rollcalls"] = record.get("rollcalls")
    return out


# The lecturer starts a roll call (from the phone's namespace: its link, the relay's origin).
CALL = """async ([session, token]) => {
  const r = await fetch(`/api/sessions/${session}/rollcalls`, {method: "POST",
    headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
    body: JSON.stringify({window_s: 60})});
  return r.status;
}"""
ANSWERED = "() => document.querySelector('.rollcall .rc-time')?.textContent || ''"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--handover-at", type=float)
    parser.add_argument("--bed")
    parser.add_argument("--recover-at", type=float, help="seconds after the first frame")
    parser.add_argument("--bed-pid", type=int, help="the bed's process (scripts/netbed.py up)")
    parser.add_argument("--trace", help="write every sample here, as JSON")
    parser.add_argument("--rollcall-at", type=float, help="seconds after the first frame")
    parser.add_argument("--lecturer", help="the lecturer's token (--rollcall-at)")
    args = parser.parse_args()
    got = asyncio.run(
        run(
            args.url,
            args.seconds,
            args.handover_at,
            args.bed,
            args.trace,
            args.recover_at,
            args.bed_pid,
            args.rollcall_at,
            args.lecturer,
        )  # fmt: skip
    )
    print(json.dumps(got), flush=True)


if __name__ == "__main__":
    main()
