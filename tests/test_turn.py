"""The fallback send path: a viewer whose only route to the relay is a TURN server (coturn,
started by the test on loopback) gets its media through it. The relay offers no host
candidate, so ICE can only pair through the relayed ones, and the relay's direct raw-socket
send cannot be used: packets go through aioice's TURN client instead (media/fastpath
SendPath, queued).

And a configured TURN server that does not answer holds no WHIP/WHEP answer back: the relay
answers with its host candidates once its bounded wait for the allocation is over."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from media import native
from server.config import IceServer
from tests.client import publish, watch
from tests.conftest import running_relay
from tests.sources import PatternVideoTrack, ToneAudioTrack
from tests.test_attendance import lecture
from tests.test_cli import free_port
from tests.test_workers import ROOT, env_for, metrics, start_server, stop_server

TURN = shutil.which("turnserver")


@pytest.fixture
def turn_server(tmp_path):
    if TURN is None:
        pytest.fail("coturn is not installed (scripts/test installs it)")
    port = free_port()
    low = free_port() // 2 * 2
    proc = subprocess.Popen(
        [
            TURN, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint", "--lt-cred-mech",
            "--user=relay:secret", "--realm=lecture-relay", "--listening-ip=127.0.0.1",
            f"--listening-port={port}", "--relay-ip=127.0.0.1", "--allow-loopback-peers",
            f"--min-port={min(low, 60000)}", f"--max-port={min(low, 60000) + 200}",
            f"--pidfile={tmp_path / 'turn.pid'}", "--log-file=stdout", "--simple-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield IceServer(f"turn:127.0.0.1:{port}", "relay", "secret")
    proc.terminate()
    proc.wait(10)


async def test_a_viewer_reached_only_through_turn_gets_the_lecture(tmp_path, turn_server):
    # The relay runs in its own process: host addresses are process-wide in aioice, and this
    # test's peers keep 127.0.0.1 while the relay offers none (LR_ICE_HOSTS=none).
    proc, url = await start_server(
        tmp_path, 1, LR_ICE_HOSTS="none", LR_ICE_SERVERS=turn_server.as_url()
    )
    try:
        links = json.loads(
            subprocess.run(
                [sys.executable, "-m", "server", "session", "create", "--title", "TURN",
                 "--json"],
                cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        sid = links["session_id"]
        async with aiohttp.ClientSession() as http:
            lecture = await publish(
                http, url, sid, links["lecturer_token"],
                [ToneAudioTrack(), PatternVideoTrack()], video_codec="H264",
            )  # fmt: skip
            viewing = await watch(http, url, sid, links["viewer_token"])
            try:
                stats = await viewing.wait_frames("video", 20, timeout=30)
                assert stats.sizes == {(320, 240)}
                await viewing.wait_frames("audio", 20, timeout=10)
                m = await metrics(http, url)
                assert m["lr_viewers_relayed"] == 1 and m["lr_subscribers"] == 1
                # a relayed pair has no socket of its own: the Python loop sends it, beside the
                # native one where that is built (the process forwards on it)
                assert m['lr_fastpath{path="native"}'] == int(native.BUILT)
                # the answer named no host candidate: only the TURN server's relayed ones
                assert "typ host" not in viewing.pc.remoteDescription.sdp
                assert "typ relay" in viewing.pc.remoteDescription.sdp
            finally:
                await viewing.stop(http)
                await lecture.stop(http)
    finally:
        stop_server(proc)


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_turn_server_that_does_not_answer_holds_no_answer_back(tmp_path):
    silent = IceServer(f"turn:127.0.0.1:{closed_udp_port()}", "u", "p")
    async with running_relay(tmp_path, ice_servers=(silent,)) as relay:
        links = relay.new_session()
        started = time.monotonic()
        publication = await lecture(relay, links)
        whip_s = time.monotonic() - started
        started = time.monotonic()
        sid = links["session_id"]
        viewing = await watch(relay.http, relay.base_url, sid, links["viewer_token"])
        whep_s = time.monotonic() - started
        try:
            # aioice alone waits 5 s for the allocation before it gives up
            assert whip_s < 1.5 and whep_s < 1.5, (whip_s, whep_s)
            answer = viewing.pc.remoteDescription.sdp
            assert "typ host" in answer and "typ relay" not in answer
            await viewing.wait_frames("video", 10, timeout=10)
            await viewing.wait_frames("audio", 10, timeout=10)
        finally:
            await viewing.stop(relay.http)
            await publication.stop(relay.http)
