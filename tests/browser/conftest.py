"""Headless Chromium (Debian's package) driven by Playwright, its traffic kept on loopback.

The flags are those ../shared/INTEROP.md measured: fake camera and permission prompt,
mDNS candidates off (merged into Playwright's own --disable-features list, since a second
switch would replace the first), and no DNS but for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FIXED_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (scripts/test installs it)",
)


def own_addresses() -> tuple[str, ...]:
    """This machine's IPv4 interface addresses, each as a /32."""
    try:
        out = subprocess.run(
            ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(f"{line.split()[3].split('/')[0]}/32" for line in out.splitlines())


# Once a page has the camera, Chromium sends its ICE checks to the relay's 127.0.0.1 from this
# machine's own interface address (INTEROP.md: it binds that interface beside loopback), so
# the relay learns it as a peer-reflexive candidate. The packets never leave the machine; the
# relay's LR_ICE_PEER_NETWORKS, which holds for learned candidates too, must name it.
on_this_machine = pytest.mark.relay_config(ice_peer_networks=("127.0.0.0/8", *own_addresses()))


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


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        theirs = await playwright_disable_features(pw)
        features = ["WebRtcHideLocalIpsWithMdns"]
        ignore = []
        if theirs:
            ignore.append(theirs)
            features = theirs.split("=", 1)[1].split(",") + features
        b = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*FIXED_ARGS, "--disable-features=" + ",".join(features)],
            ignore_default_args=ignore,
        )
        yield b
        await b.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
