"""One typed configuration object, built once from the environment and the CLI.

No other module reads ``os.environ``: everything is passed down from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server offered to pages and used by the relay's own peers."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def as_json(self) -> dict:
        out: dict = {"urls": self.urls}
        if self.username:
            out["username"] = self.username
        if self.credential:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # Public base URL printed in links; defaults to http://host:port.
    public_url: str | None = None
    # None: aioice's own choice (every interface but loopback). A list: offer exactly these.
    ice_host_addresses: tuple[str, ...] | None = None
    # None: try every candidate a peer offers (but mDNS ones). A tuple of networks: only those.
    ice_peer_networks: tuple[str, ...] | None = None
    # No STUN/TURN unless configured: deployments sit on government intranets.
    ice_servers: tuple[IceServer, ...] = ()
    # Secret for signing tokens; when None, one is created in data_dir (mode 0600).
    secret: str | None = None
    token_ttl_s: int = 14 * 24 * 3600
    max_sdp_bytes: int = 64 * 1024
    # Least time between two keyframe requests sent to the publisher.
    keyframe_interval_s: float = 0.5
    log_level: str = "INFO"
    # The Ed25519 key that signs ledger checkpoints, kept outside data_dir.
    # None: ~/.lecture-relay/ledger-ed25519.pem
    ledger_key: Path | None = None
    # How often pages report playback (the ledger's page-side evidence).
    heartbeat_interval_s: float = 10.0
    # A viewer whose page sends no heartbeat for this long is ended (0: never).
    heartbeat_timeout_s: float = 45.0
    checkpoint_interval_s: float = 60.0
    # Share of the lecture's length a member must watch to be credited.
    credit_threshold: float = 0.8
    # Recordings and replays (recordings/, replays/); None: the data directory.
    media_dir: Path | None = None
    # Days to keep recordings once their replay is made, and replays (0: forever).
    recording_retention_days: float = 0
    replay_retention_days: float = 0
    # Class hours a member should earn in a year (轮训).
    yearly_target_hours: float = 12.0
    # HTTPS: browsers open the camera only on https:// (or http://localhost).
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "relay.sqlite3"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def checkpoint_log_path(self) -> Path:
        return self.data_dir / "checkpoints.jsonl"

    @property
    def media_root(self) -> Path:
        return self.media_dir or self.data_dir

    @property
    def ledger_key_path(self) -> Path:
        return self.ledger_key or Path.home() / ".lecture-relay" / "ledger-ed25519.pem"

    def with_overrides(self, **changes: object) -> Config:
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean)


def _parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """``stun:host:3478,turn:user:pass@host:3478`` → IceServer tuple."""
    servers = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        scheme, _, rest = item.partition(":")
        username = credential = None
        if "@" in rest:
            auth, _, rest = rest.rpartition("@")
            username, _, credential = auth.partition(":")
        servers.append(IceServer(f"{scheme}:{rest}", username or None, credential or None))
    return tuple(servers)


def config_from_env(env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    kwargs: dict = {}
    if "LR_HOST" in env:
        kwargs["host"] = env["LR_HOST"]
    if "LR_PORT" in env:
        kwargs["port"] = int(env["LR_PORT"])
    if "LR_DATA" in env:
        kwargs["data_dir"] = Path(env["LR_DATA"])
    if "LR_PUBLIC_URL" in env:
        kwargs["public_url"] = env["LR_PUBLIC_URL"]
    if env.get("LR_ICE_HOSTS"):
        kwargs["ice_host_addresses"] = tuple(a.strip() for a in env["LR_ICE_HOSTS"].split(","))
    if env.get("LR_ICE_PEER_NETWORKS"):
        kwargs["ice_peer_networks"] = tuple(
            n.strip() for n in env["LR_ICE_PEER_NETWORKS"].split(",")
        )
    if env.get("LR_ICE_SERVERS"):
        kwargs["ice_servers"] = _parse_ice_servers(env["LR_ICE_SERVERS"])
    if env.get("LR_SECRET"):
        kwargs["secret"] = env["LR_SECRET"]
    if "LR_TOKEN_TTL" in env:
        kwargs["token_ttl_s"] = int(env["LR_TOKEN_TTL"])
    if env.get("LR_TLS_CERT"):
        kwargs["tls_cert"] = Path(env["LR_TLS_CERT"])
    if env.get("LR_TLS_KEY"):
        kwargs["tls_key"] = Path(env["LR_TLS_KEY"])
    if env.get("LR_LEDGER_KEY"):
        kwargs["ledger_key"] = Path(env["LR_LEDGER_KEY"])
    if "LR_HEARTBEAT_INTERVAL" in env:
        kwargs["heartbeat_interval_s"] = float(env["LR_HEARTBEAT_INTERVAL"])
    if "LR_HEARTBEAT_TIMEOUT" in env:
        kwargs["heartbeat_timeout_s"] = float(env["LR_HEARTBEAT_TIMEOUT"])
    if "LR_CHECKPOINT_INTERVAL" in env:
        kwargs["checkpoint_interval_s"] = float(env["LR_CHECKPOINT_INTERVAL"])
    if "LR_CREDIT_THRESHOLD" in env:
        kwargs["credit_threshold"] = float(env["LR_CREDIT_THRESHOLD"])
    if env.get("LR_MEDIA_DIR"):
        kwargs["media_dir"] = Path(env["LR_MEDIA_DIR"])
    if "LR_RECORDING_RETENTION_DAYS" in env:
        kwargs["recording_retention_days"] = float(env["LR_RECORDING_RETENTION_DAYS"])
    if "LR_REPLAY_RETENTION_DAYS" in env:
        kwargs["replay_retention_days"] = float(env["LR_REPLAY_RETENTION_DAYS"])
    if "LR_YEARLY_TARGET_HOURS" in env:
        kwargs["yearly_target_hours"] = float(env["LR_YEARLY_TARGET_HOURS"])
    if "LR_LOG_LEVEL" in env:
        kwargs["log_level"] = env["LR_LOG_LEVEL"]
    return Config(**kwargs)


__all__ = ["Config", "IceServer", "config_from_env", "field"]
