"""One typed configuration object, built once from the environment and the CLI.

No other module reads ``os.environ``: everything is passed down from here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

# The share of a lecture a member watches to be credited, unless the session sets its own.
DEFAULT_THRESHOLD = 0.8


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server offered to pages and used by the relay's own peers."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def as_url(self) -> str:
        """The ``LR_ICE_SERVERS`` form: ``turn:user:pass@host:3478``."""
        if not self.username:
            return self.urls
        scheme, _, rest = self.urls.partition(":")
        return f"{scheme}:{self.username}:{self.credential or ''}@{rest}"

    def as_json(self) -> dict:
        out: dict = {"urls": self.urls}
        if self.username:
            out["username"] = self.username
        if self.credential:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class Rate:
    """A limit: ``burst`` at once, then one every ``every_s`` seconds (server/web/limits.py).
    ``LR_*_RATE`` reads ``burst/every_s``, e.g. ``3/10``; ``0`` turns the limit off."""

    burst: int
    every_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        burst, _, every = text.partition("/")
        rate = cls(int(burst), float(every or 1))
        if rate.burst < 0 or rate.every_s <= 0:
            raise ValueError(f"a rate is burst/seconds with seconds > 0: {text!r}")
        return rate


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
    # The secret shared with coturn (static-auth-secret): TURN servers listed without a user
    # are handed out with a credential of the caller's own, expiring after turn_ttl_s.
    turn_secret: str | None = None
    turn_ttl_s: int = 24 * 3600
    # Origins whose pages may call WHIP, WHEP and the session's read route (server/web/cors.py).
    cors_origins: tuple[str, ...] = ("*",)
    # reverse proxies whose X-Forwarded-For/-Proto are believed (server/web/proxies.py)
    trusted_proxies: tuple[str, ...] = ()
    # /metrics: with a token, only for it (or an admin's); without, only to loopback callers.
    metrics_token: str | None = None
    # Secret for signing tokens; when None, one is created in data_dir (mode 0600).
    secret: str | None = None
    token_ttl_s: int = 14 * 24 * 3600
    max_sdp_bytes: int = 64 * 1024
    # Connections answered but not yet connected, per source address (429 past it): a
    # township's phones share one NAT address, so this is well above a classroom's; 0: no cap.
    pending_per_address: int = 20
    # A connection not connected this long after its answer is closed (it never joined).
    connect_timeout_s: float = 30.0
    # A heartbeat WebSocket that has not shown its token this long after opening is closed.
    socket_auth_timeout_s: float = 5.0
    # Per source address: wrong room codes; per participant: each is a ledger event.
    room_code_rate: Rate = Rate(10, 60.0)
    question_rate: Rate = Rate(3, 10.0)
    headcount_rate: Rate = Rate(5, 5.0)
    feedback_rate: Rate = Rate(3, 20.0)
    # Least time between two keyframe requests sent to the publisher.
    keyframe_interval_s: float = 0.5
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object a line (server/logs.py)
    # the fan-out loop: "native" (media/_fanout.c, when built) or "python" (media/native.py)
    fastpath: str = "native"
    # The Ed25519 key that signs ledger checkpoints, kept outside data_dir.
    # None: ~/.lecture-relay/ledger-ed25519.pem
    ledger_key: Path | None = None
    # How often pages report playback (the ledger's page-side evidence).
    heartbeat_interval_s: float = 10.0
    # A viewer whose page sends no heartbeat for this long is ended (0: never).
    heartbeat_timeout_s: float = 45.0
    # A connection's heartbeats closer together than this are refused (429): a page sends one
    # every heartbeat_interval_s, and each is a ledger event.
    heartbeat_min_gap_s: float = 1.0
    checkpoint_interval_s: float = 60.0
    # Least time between two ledger commits: appends in between share one (docs/DECISIONS.md).
    ledger_commit_interval_s: float = 0.01
    # The ledger is written by a child process of the server (False: by a thread of it).
    ledger_process: bool = True
    # Young collections of CPython's cycle collector this often as well as on its count, a
    # middle one every fourth (server/runtime.py, docs/DECISIONS.md); 0: on its count only.
    gc_pace_s: float = 0.025
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
    # Quality layers: a viewer steps down when it fails to get more than this share of a
    # window of packets (media/layers.LayerPolicy), and back up after this long without loss
    # (docs/DECISIONS.md, "Layers").
    layer_down_loss: float = 0.05
    layer_up_after_s: float = 8.0
    # Cluster mode (docs/SCALING.md): nodes coordinate through this Redis when it is set.
    redis_url: str | None = None
    # This node's name in the registry; None: host:port.
    node_id: str | None = None
    # The address other nodes send this node's RTP pipes to; None: the listen host
    # (127.0.0.1 when that is a wildcard).
    pipe_host: str | None = None
    # The home node holds the database and the ledger; edge nodes send attendance through
    # the Redis stream. The home node also runs the stream's ledger writer unless told not to
    # (then ``lecture-relay ledger-writer`` runs it).
    cluster_home: bool = True
    ledger_writer: bool = True
    # A node that has not refreshed its registry entry for this long is dropped.
    node_ttl_s: float = 6.0

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def node_name(self) -> str:
        return self.node_id or f"{self.host}:{self.port}"

    @property
    def pipe_address(self) -> str:
        if self.pipe_host:
            return self.pipe_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def store_path(self) -> Path:
        return self.data_dir / "relay.sqlite3"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def outbox_path(self) -> Path:
        """An edge node's attendance until the home node's ledger has it."""
        return self.data_dir / "outbox.sqlite3"

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


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("0", "false", "no", "off", "")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(","))


def host_addresses(items: tuple[str, ...]) -> tuple[str, ...]:
    """Addresses to offer as host candidates (``LR_ICE_HOSTS``, ``--ice-host``); ``none``: no
    host candidate at all, so that viewers reach the relay only through the configured TURN
    server."""
    return () if tuple(i.strip().lower() for i in items) == ("none",) else items


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs (``LR_TRUSTED_PROXIES``) as networks; ValueError names a bad one."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or a network") from None
    return tuple(out)


def _proxies(text: str) -> tuple[str, ...]:
    items = tuple(i for i in _csv(text) if i)
    networks(items)  # each one an address or a network, else ValueError naming it
    return items


def _log_format(text: str) -> str:
    if text.strip().lower() not in ("text", "json"):
        raise ValueError("text or json")
    return text.strip().lower()


def _fastpath(text: str) -> str:
    if text.strip().lower() not in ("native", "python"):
        raise ValueError("native or python")
    return text.strip().lower()


def _host_addresses(text: str) -> tuple[str, ...]:
    return host_addresses(_csv(text))


# (variable, field, conversion, whether an empty value counts as unset)
ENV: tuple[tuple[str, str, Callable[[str], object], bool], ...] = (
    ("LR_HOST", "host", str, False),
    ("LR_PORT", "port", int, False),
    ("LR_DATA", "data_dir", Path, False),
    ("LR_PUBLIC_URL", "public_url", str, False),
    ("LR_ICE_HOSTS", "ice_host_addresses", _host_addresses, True),
    ("LR_ICE_PEER_NETWORKS", "ice_peer_networks", _csv, True),
    ("LR_ICE_SERVERS", "ice_servers", _parse_ice_servers, True),
    ("LR_SECRET", "secret", str, True),
    ("LR_TURN_SECRET", "turn_secret", str, True),
    ("LR_TURN_TTL", "turn_ttl_s", int, False),
    ("LR_METRICS_TOKEN", "metrics_token", str, True),
    ("LR_CORS_ORIGINS", "cors_origins", _csv, False),
    ("LR_TRUSTED_PROXIES", "trusted_proxies", _proxies, True),
    ("LR_TOKEN_TTL", "token_ttl_s", int, False),
    ("LR_TLS_CERT", "tls_cert", Path, True),
    ("LR_TLS_KEY", "tls_key", Path, True),
    ("LR_LEDGER_KEY", "ledger_key", Path, True),
    ("LR_HEARTBEAT_INTERVAL", "heartbeat_interval_s", float, False),
    ("LR_HEARTBEAT_TIMEOUT", "heartbeat_timeout_s", float, False),
    ("LR_HEARTBEAT_MIN_GAP", "heartbeat_min_gap_s", float, False),
    ("LR_CHECKPOINT_INTERVAL", "checkpoint_interval_s", float, False),
    ("LR_LEDGER_COMMIT_INTERVAL", "ledger_commit_interval_s", float, False),
    ("LR_LEDGER_PROCESS", "ledger_process", _flag, False),
    ("LR_GC_PACE", "gc_pace_s", float, False),
    ("LR_MEDIA_DIR", "media_dir", Path, True),
    ("LR_RECORDING_RETENTION_DAYS", "recording_retention_days", float, False),
    ("LR_REPLAY_RETENTION_DAYS", "replay_retention_days", float, False),
    ("LR_YEARLY_TARGET_HOURS", "yearly_target_hours", float, False),
    ("LR_LOG_LEVEL", "log_level", str, False),
    ("LR_LOG_FORMAT", "log_format", _log_format, False),
    ("LR_FASTPATH", "fastpath", _fastpath, False),
    ("LR_KEYFRAME_INTERVAL", "keyframe_interval_s", float, False),
    ("LR_LAYER_DOWN_LOSS", "layer_down_loss", float, False),
    ("LR_LAYER_UP_AFTER", "layer_up_after_s", float, False),
    ("REDIS_URL", "redis_url", str, True),
    ("LR_REDIS_URL", "redis_url", str, True),
    ("LR_NODE_ID", "node_id", str, True),
    ("LR_PIPE_HOST", "pipe_host", str, True),
    ("LR_CLUSTER_HOME", "cluster_home", _flag, False),
    ("LR_LEDGER_WRITER", "ledger_writer", _flag, False),
    ("LR_NODE_TTL", "node_ttl_s", float, False),
    ("LR_PENDING_PER_ADDRESS", "pending_per_address", int, False),
    ("LR_CONNECT_TIMEOUT", "connect_timeout_s", float, False),
    ("LR_SOCKET_AUTH_TIMEOUT", "socket_auth_timeout_s", float, False),
    ("LR_ROOM_CODE_RATE", "room_code_rate", Rate.parse, False),
    ("LR_QUESTION_RATE", "question_rate", Rate.parse, False),
    ("LR_HEADCOUNT_RATE", "headcount_rate", Rate.parse, False),
    ("LR_FEEDBACK_RATE", "feedback_rate", Rate.parse, False),
)


class ConfigError(ValueError):
    """A setting the relay cannot take: names the variable and why (the CLI prints it)."""


def config_from_env(env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    kwargs = {}
    for var, name, convert, skip_empty in ENV:
        if var in env and (env[var] or not skip_empty):
            try:
                kwargs[name] = convert(env[var])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{var}={env[var]!r}: {exc}") from None
    return Config(**kwargs)


__all__ = ["Config", "ConfigError", "IceServer", "Rate", "config_from_env"]
