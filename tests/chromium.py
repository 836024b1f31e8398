"""Debian's headless Chromium under Playwright, launched one way for every test and bench.

The flags are those ../shared/INTEROP.md measured: fake camera and permission prompt, mDNS
candidates off (merged into Playwright's own --disable-features list, since a second switch
would replace the first), no DNS but for the names the caller allows, no background traffic.
"""

from __future__ import annotations

import re

CHROMIUM = "/usr/bin/chromium"
FIXED_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def resolver_rule(*hosts: str) -> str:
    """Chromium reaches no host but these by name or address (the rule holds for IP literals
    too)."""
    excluded = " , ".join(f"EXCLUDE {h}" for h in ("127.0.0.1", "localhost", *hosts))
    return f"--host-resolver-rules=MAP * ~NOTFOUND , {excluded}"


async def playwright_disable_features(pw) -> str | None:
    """Playwright's own --disable-features switch, read off chrome://version."""
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FIXED_ARGS)
    try:
        page = await browser.new_page()
        await page.goto("chrome://version")
        text = await page.inner_text("body")
    finally:
        await browser.close()
    match = re.search(r"(--disable-features=\S+)", text)
    return match.group(1) if match else None


async def launch(pw, *args: str, hosts: tuple[str, ...] = ()):
    """Headless Chromium with the fixed flags, mDNS candidates off, and ``args``; it reaches
    loopback and ``hosts`` alone."""
    theirs = await playwright_disable_features(pw)
    features = ["WebRtcHideLocalIpsWithMdns"]
    ignore = []
    if theirs:
        ignore.append(theirs)
        features = theirs.split("=", 1)[1].split(",") + features
    switches = [*FIXED_ARGS, resolver_rule(*hosts), *args]
    return await pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*switches, "--disable-features=" + ",".join(features)],
        ignore_default_args=ignore,
    )
