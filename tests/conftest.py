"""Fixtures: a real relay on 127.0.0.1 with a real SQLite file, real aiortc peers.

Every peer in the test process gathers 127.0.0.1 alone and uses no STUN server.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from media import native
from media.fastpath import restrict_host_addresses
from server.app import RUNNER_OPTIONS, create_app
from server.config import Config
from server.lectures.links import session_links
from server.state import STATE
from tests.netbed import bed  # noqa: F401 - the network test bed's fixture

restrict_host_addresses(("127.0.0.1",))


@dataclass
class Relay:
    base_url: str
    app: web.Application
    http: aiohttp.ClientSession
    config: Config

    @property
    def state(self):
        return self.app[STATE]

    def new_session(self, title: str = "测试讲座", video_codec: str = "H264") -> dict:
        session = self.state.store.create_session(title, None, video_codec)
        return session_links(self.config, self.state.signer, session)

    def token(self, role: str, session: str | None, subject: str | None = None, ttl: int = 600):
        return self.state.signer.issue(role, session, subject, ttl)


@pytest.fixture
async def relay(tmp_path, request):
    """A relay; ``@pytest.mark.relay_config(name=value)`` overrides its settings."""
    marker = request.node.get_closest_marker("relay_config")
    async with running_relay(tmp_path, **(marker.kwargs if marker else {})) as started:
        yield started


# The fan-out loops a relay can forward on (media/native.py): the native one where it was
# built, and the Python one it falls back to.
FASTPATHS = ("native", "python") if native.BUILT else ("python",)


@pytest.fixture(params=FASTPATHS)
async def relay_on_each_path(tmp_path, request):
    """The relay fixture, once on each fan-out loop (a module's forwarding tests take it as
    their ``relay``)."""
    marker = request.node.get_closest_marker("relay_config")
    settings = {**(marker.kwargs if marker else {}), "fastpath": request.param}
    async with running_relay(tmp_path, **settings) as started:
        assert native.path() == request.param
        yield started


@asynccontextmanager
async def running_relay(tmp_path, **overrides):
    """A relay on 127.0.0.1 with the tests' settings, ``overrides`` applied."""
    config = Config(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        ice_host_addresses=("127.0.0.1",),
        ice_peer_networks=("127.0.0.0/8",),
        secret="test-secret-not-for-production",
        keyframe_interval_s=0.3,
        ledger_key=tmp_path / "keys" / "ledger.pem",
        heartbeat_interval_s=1.0,
        heartbeat_min_gap_s=0.0,  # tests send heartbeats back to back; one test sets a gap
    ).with_overrides(**overrides)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(**RUNNER_OPTIONS)  # as `serve` runs it
    config = config.with_overrides(port=server.port)
    async with aiohttp.ClientSession() as http:
        yield Relay(f"http://127.0.0.1:{server.port}", app, http, config)
    await server.close()
