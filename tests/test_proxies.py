"""Behind a reverse proxy (deploy/nginx.conf): the client's own address and scheme come from
X-Forwarded-For/-Proto only when the peer is a trusted proxy (LR_TRUSTED_PROXIES)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import ConfigError, config_from_env, networks
from server.web.proxies import client_of

PROXIES = networks(["127.0.0.1", "10.0.0.0/24"])


def test_the_client_is_the_right_most_hop_that_is_not_a_proxy():
    assert client_of(["203.0.113.9"], PROXIES) == "203.0.113.9"
    # what the client claimed is left of what the proxies saw: never believed
    assert client_of(["6.6.6.6, 203.0.113.9, 10.0.0.7"], PROXIES) == "203.0.113.9"
    assert client_of(["6.6.6.6", "203.0.113.9"], PROXIES) == "203.0.113.9"  # two headers
    assert client_of(["2001:db8::1"], PROXIES) == "2001:db8::1"
    assert client_of(["10.0.0.7"], PROXIES) is None  # only proxies
    assert client_of([], PROXIES) is None
    assert client_of(["203.0.113.9, not-an-address"], PROXIES) is None


@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_forwarded_header_reads_as_an_address_or_none(headers):
    got = client_of(headers, PROXIES)
    assert got is None or networks([got])  # a well-formed address, never the raw text


def test_a_bad_proxy_setting_is_named():
    assert config_from_env({"LR_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}).trusted_proxies == (
        "127.0.0.1",
        "10.0.0.0/8",
    )
    with pytest.raises(ConfigError, match="LR_TRUSTED_PROXIES.*'10.0.0.0/33'"):
        config_from_env({"LR_TRUSTED_PROXIES": "10.0.0.0/33"})


async def metrics_status(relay, headers: dict) -> int:
    async with relay.http.get(f"{relay.base_url}/metrics", headers=headers) as resp:
        return resp.status


@pytest.mark.relay_config(trusted_proxies=("127.0.0.1",))
async def test_behind_a_trusted_proxy_metrics_are_not_open_to_the_county(relay):
    """/metrics is for this machine only (without LR_METRICS_TOKEN): through the proxy the
    caller is the phone or PC it forwarded, not this machine."""
    assert await metrics_status(relay, {}) == 200  # the proxy itself asking
    assert await metrics_status(relay, {"X-Forwarded-For": "203.0.113.9"}) == 403
    assert await metrics_status(relay, {"X-Forwarded-For": "127.0.0.1"}) == 200  # only proxies


async def test_without_a_trusted_proxy_the_headers_are_ignored(relay):
    assert await metrics_status(relay, {"X-Forwarded-For": "203.0.113.9"}) == 200
