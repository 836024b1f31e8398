"""Headless Chromium (Debian's package) driven by Playwright, its traffic kept on loopback;
launched as tests/chromium.py says (the flags INTEROP.md measured)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.chromium import CHROMIUM, launch

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

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


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await launch(pw)
        yield b
        await b.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
