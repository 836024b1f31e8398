"""What the relay hands out of its secrets (issue 24, item 11): TURN credentials only to a
caller with a token, of its own and expiring; no file path in JSON; /metrics not for all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from aiohttp.test_utils import make_mocked_request

from server.config import IceServer
from server.web.errors import HTTPProblem
from server.web.metrics import may_scrape
from tests.calls import call

TURN = IceServer("turn:127.0.0.1:3478")
STATIC_TURN = IceServer("turn:127.0.0.1:3479", "relay", "static-password")
STUN = IceServer("stun:127.0.0.1:3478")


async def options(relay, sid: str, token: str | None = None) -> tuple[int, list[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with relay.http.options(f"{relay.base_url}/whep/{sid}", headers=headers) as resp:
        return resp.status, resp.headers.getall("Link", [])


@pytest.mark.relay_config(ice_servers=(STUN, STATIC_TURN))
async def test_an_unauthenticated_options_names_no_credential(relay):
    links = relay.new_session()
    sid = links["session_id"]
    status, heads = await options(relay, sid)
    assert status == 200
    assert heads == ['<stun:127.0.0.1:3478>; rel="ice-server"']
    assert not [h for h in heads if "static-password" in h or "turn:" in h]
    status, heads = await options(relay, sid, links["viewer_token"])
    assert status == 200 and any('credential="static-password"' in h for h in heads)
    status, _ = await options(relay, sid, relay.token("viewer", "another"))
    assert status == 403


@pytest.mark.relay_config(ice_servers=(TURN,), turn_secret="shared-with-coturn", turn_ttl_s=600)
async def test_each_caller_gets_a_turn_credential_of_its_own_that_expires(relay):
    links = relay.new_session()
    sid = links["session_id"]
    viewer = links["viewer_token"]
    seen = []
    for token in (viewer, viewer, relay.token("member", sid, "M1"), links["lecturer_token"]):
        status, info = await call(relay, "GET", f"/api/sessions/{sid}", token)
        assert status == 200
        (server,) = info["ice_servers"]
        expiry, who = server["username"].split(":", 1)
        assert time.time() + 590 <= int(expiry) <= time.time() + 601
        assert "M1" not in who  # a member id stays out of the TURN server's logs
        mac = hmac.new(b"shared-with-coturn", server["username"].encode(), hashlib.sha1)
        assert server["credential"] == base64.b64encode(mac.digest()).decode()
        seen.append(server["username"])
    assert len(set(seen)) == 4  # two phones on the one open link: two credentials
    # the WHEP answer's Link headers carry the caller's own, too
    status, heads = await options(relay, sid, viewer)
    assert status == 200 and 'credential-type="password"' in heads[0]
    status, heads = await options(relay, sid)
    assert heads == []  # a TURN server is never named to a stranger


@pytest.mark.relay_config(metrics_token="scrape-me")
async def test_metrics_with_a_token_only_for_it_or_an_admin(relay):
    url = f"{relay.base_url}/metrics"
    for token, status in (
        (None, 401),
        ("wrong", 401),
        (relay.token("viewer", "s"), 403),
        ("scrape-me", 200),
        (relay.token("admin", None), 200),
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with relay.http.get(url, headers=headers) as resp:
            assert resp.status == status, token
            if status == 200:
                assert "lr_" in await resp.text()


async def test_metrics_without_a_token_only_on_this_machine(relay):
    async with relay.http.get(f"{relay.base_url}/metrics") as resp:
        assert resp.status == 200  # the tests' own scrapes come from 127.0.0.1
    # the same rule for a caller elsewhere (the test's sockets are all on loopback)
    request = make_mocked_request("GET", "/metrics", app=relay.app)
    with pytest.raises(HTTPProblem) as refused:
        may_scrape(request.clone(remote="198.18.0.7"), relay.state)
    assert refused.value.status == 403 and "LR_METRICS_TOKEN" in refused.value.reason
