"""deploy/ (issue 27): the systemd unit passes systemd-analyze, holds the hardening the runbook
promises, and the example settings are ones the relay takes, with coturn's secret the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ENV, config_from_env

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def settings(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in settings(DEPLOY / "lecture-relay.service").items():
        if not key.startswith("["):
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_passes_systemd_analyze(tmp_path):
    """Its command pointed at this environment's (systemd checks that it exists); any warning
    about the unit fails, not only an error."""
    command = Path(sys.executable).with_name("lecture-relay")
    text = (DEPLOY / "lecture-relay.service").read_text()
    copy = tmp_path / "lecture-relay.service"
    copy.write_text(text.replace("/opt/lecture-relay/venv/bin/lecture-relay", str(command)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if "lecture-relay" in line]
    assert done.returncode == 0 and said == [], done.stdout + done.stderr


def test_the_unit_runs_as_its_own_user_with_only_its_data_writable():
    u = unit()
    assert u["User"] == ["lecture-relay"] and u["ProtectSystem"] == ["strict"]
    assert u["ReadWritePaths"] == ["/var/lib/lecture-relay"]
    assert u["Restart"] == ["on-failure"] and int(u["LimitNOFILE"][0]) >= 65536
    assert u["UMask"] == ["0077"]  # databases, keys and exports: the owner's alone


def test_the_example_settings_are_the_relays_and_coturn_shares_its_secret():
    env = settings(DEPLOY / "relay.env")
    known = {var for var, *_ in ENV}
    assert set(env) <= known, set(env) - known
    config = config_from_env(env)  # every value taken
    assert config.public_url.startswith("https://") and config.ice_host_addresses
    turn = settings(DEPLOY / "turnserver.conf")
    assert "use-auth-secret" in turn and turn["static-auth-secret"] == config.turn_secret
    nginx = (DEPLOY / "nginx.conf").read_text()
    for needed in ("proxy_request_buffering off", "Upgrade $http_upgrade", "X-Forwarded-For"):
        assert needed in nginx
    assert env["LR_TRUSTED_PROXIES"] == "127.0.0.1"  # nginx on the same host
