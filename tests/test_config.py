"""Configuration from the environment: every variable, and empty values where they mean unset."""

from __future__ import annotations

from pathlib import Path

from server.config import Config, IceServer, config_from_env


def test_environment_variables_set_the_configuration():
    c = config_from_env(
        {
            "LR_PORT": "9000",
            "LR_DATA": "/srv/lr",
            "LR_ICE_HOSTS": "127.0.0.1, 10.0.0.2",
            "LR_ICE_SERVERS": "stun:s.example:3478,turn:u:p@t.example:3478",
            "LR_HEARTBEAT_TIMEOUT": "0",
            "LR_MEDIA_DIR": "/media",
            "LR_GC_PACE": "0",
        }
    )
    assert c.port == 9000 and c.data_dir == Path("/srv/lr")
    assert c.ice_host_addresses == ("127.0.0.1", "10.0.0.2")
    assert c.ice_servers == (
        IceServer("stun:s.example:3478"),
        IceServer("turn:t.example:3478", "u", "p"),
    )
    assert c.heartbeat_timeout_s == 0 and c.media_root == Path("/media")
    assert c.gc_pace_s == 0 and Config().gc_pace_s > 0


def test_empty_secrets_and_lists_are_unset_and_nothing_means_the_defaults():
    c = config_from_env({"LR_SECRET": "", "LR_ICE_HOSTS": "", "LR_LEDGER_KEY": ""})
    assert c == Config()
    assert c.secret is None and c.ice_host_addresses is None and c.ice_servers == ()


def test_ice_hosts_none_offers_no_host_candidate_and_reaches_the_workers_so():
    from server.app import worker_env

    c = config_from_env({"LR_ICE_HOSTS": "none"})
    assert c.ice_host_addresses == ()
    assert worker_env(c)["LR_ICE_HOSTS"] == "none"  # not "", which would mean "every interface"
    assert config_from_env({"LR_ICE_HOSTS": worker_env(c)["LR_ICE_HOSTS"]}) == c
