"""``lecture-relay doctor``: what an operator runs when phones cannot connect. Each check reads
the configuration and this machine, never a running relay, and says OK, WARN or FAIL with the
fix. Nothing here changes a file or a setting."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from server.config import Config

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GIB = 1024**3
LOW_DISK_GIB, FULL_DISK_GIB = 10, 1  # a lecture's recording is ~0.5 GiB an hour at 1 Mbit/s
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    detail: str
    fix: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(config: Config) -> Finding:
    """Browsers open the lecturer's camera only on https, or on http://localhost."""
    if config.tls_cert is not None:
        if config.tls_cert.is_file() and config.tls_key is not None and config.tls_key.is_file():
            return Finding("tls", OK, f"serving https with {config.tls_cert}")
        return Finding(
            "tls", FAIL, "LR_TLS_CERT or LR_TLS_KEY names a missing file", "fix the paths"
        )
    public = urlsplit(config.public_url or "")
    if public.scheme == "https":
        return Finding("tls", OK, f"behind an https proxy: {config.public_url}")
    if _loopback(config.host) and not config.public_url:
        return Finding(
            "tls",
            WARN,
            "plain http on this machine only: only a browser here can open the camera",
            "set LR_TLS_CERT and LR_TLS_KEY, or an https reverse proxy and LR_PUBLIC_URL",
        )
    return Finding(
        "tls",
        FAIL,
        f"plain http on {config.host}: the lecturer's browser elsewhere will not open its camera",
        "set LR_TLS_CERT and LR_TLS_KEY, or an https reverse proxy and LR_PUBLIC_URL=https://…",
    )


def host_addresses(config: Config) -> tuple[str, ...]:
    """The addresses the relay offers as host candidates: the configured ones, else what
    aioice gathers from this machine's interfaces."""
    if config.ice_host_addresses is not None:
        return config.ice_host_addresses
    from aioice.ice import get_host_addresses

    return tuple(get_host_addresses(use_ipv4=True, use_ipv6=False))


def check_ice_hosts(config: Config) -> Finding:
    """Phones reach the relay at the addresses it offers: a loopback one reaches nobody."""
    if config.ice_host_addresses == ():
        if config.ice_servers:
            return Finding("ice-hosts", OK, "no host candidate: every viewer through TURN")
        return Finding(
            "ice-hosts",
            FAIL,
            "LR_ICE_HOSTS=none and no TURN server: no viewer can reach the relay",
            "set LR_ICE_HOSTS to this machine's intranet address, or LR_ICE_SERVERS",
        )
    offered = host_addresses(config)
    loop = [a for a in offered if _loopback(a)]
    reachable = [a for a in offered if not _loopback(a)]
    if config.ice_host_addresses is not None and loop:
        return Finding(
            "ice-hosts",
            FAIL,
            f"LR_ICE_HOSTS offers {', '.join(loop)}: a phone cannot reach a loopback address",
            "set LR_ICE_HOSTS to this machine's intranet address (ip -4 addr)",
        )
    if not reachable:
        return Finding(
            "ice-hosts",
            FAIL,
            "this machine has no address but loopback to offer",
            "connect it to the intranet, or set LR_ICE_HOSTS",
        )
    if config.ice_host_addresses is not None:
        mine = set(host_addresses(Config()))  # what this machine's interfaces have
        foreign = [a for a in reachable if a not in mine]
        if foreign:
            return Finding(
                "ice-hosts",
                WARN,
                f"LR_ICE_HOSTS offers {', '.join(foreign)}, not an address of this machine",
                "right only behind a 1:1 NAT that forwards it here; else set this machine's",
            )
    return Finding("ice-hosts", OK, f"offering {', '.join(reachable)}")


def check_udp_ports(config: Config) -> Finding:
    """Each connection's media uses a UDP port from the kernel's ephemeral range."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return Finding("udp-ports", WARN, "cannot read the ephemeral port range", "")
    return Finding("udp-ports", OK, f"media on UDP {low}-{high}: open them in the firewall")


def check_file_modes(config: Config) -> list[Finding]:
    """The signing key and the databases hold people's data and what proves the record."""
    out = []
    files = {
        "ledger-key": config.ledger_key_path,
        "store": config.store_path,
        "ledger": config.ledger_path,
        "checkpoint-log": config.checkpoint_log_path,
    }
    for name, path in files.items():
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            out.append(Finding(name, OK, f"{path} not made yet (the first start makes it 0600)"))
            continue
        if mode & 0o077:
            out.append(
                Finding(
                    name,
                    FAIL,
                    f"{path} is mode {mode:04o}: others on this machine can read it",
                    f"chmod 600 {path}",
                )
            )
        else:
            out.append(Finding(name, OK, f"{path} is mode {mode:04o}"))
    return out


def check_disk(config: Config) -> Finding:
    """Recordings and replays fill the media directory; the ledger needs room to append."""
    where = config.media_root
    probe = where if where.exists() else config.data_dir if config.data_dir.exists() else Path(".")
    free = shutil.disk_usage(probe).free / GIB
    detail = f"{free:.1f} GiB free for {where}"
    fix = "free space, or set LR_RECORDING_RETENTION_DAYS and LR_REPLAY_RETENTION_DAYS"
    if free < FULL_DISK_GIB:
        return Finding("disk", FAIL, detail, fix)
    if free < LOW_DISK_GIB:
        return Finding("disk", WARN, detail, fix)
    return Finding("disk", OK, detail)


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _allocation_refused(config: Config, server, host: str, port: int) -> str | None:
    """Ask the TURN server for an allocation over TCP with the credential a page would get;
    None when it grants one, else what went wrong."""
    from aioice.turn import create_turn_endpoint

    from server.ice import turn_credential

    if server.username is not None:
        user, password = server.username, server.credential
    else:
        user, password = turn_credential(config.turn_secret, "doctor", 60)
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol, (host, port), user, password, transport="tcp"
            ),
            PROBE_TIMEOUT_S,
        )
    except TimeoutError:
        return "no answer to an allocation"
    except Exception as exc:  # noqa: BLE001 - aioice's TransactionFailed and the like
        return str(exc) or type(exc).__name__
    transport.close()
    return None


async def check_turn(config: Config) -> list[Finding]:
    """Each configured TURN server answers on TCP (the path of phones behind a UDP block),
    and has credentials: a fixed pair in its URL, or LR_TURN_SECRET for short-lived ones."""
    out = []
    for server in config.ice_servers:
        for url in server.urls.split(","):
            scheme, _, rest = url.strip().partition(":")
            if scheme not in ("turn", "turns"):
                continue
            hostport = rest.split("?", 1)[0]
            host, _, port = hostport.rpartition(":")
            host = host.strip("[]") or hostport
            port_n = int(port) if port.isdigit() else (5349 if scheme == "turns" else 3478)
            where = f"{scheme}:{host}:{port_n}"
            creds = server.username is not None or config.turn_secret is not None
            if not await _answers(host, port_n):
                out.append(
                    Finding(
                        "turn",
                        FAIL,
                        f"{where} does not answer on TCP",
                        "start coturn (docs/RUNBOOK.md) or correct LR_ICE_SERVERS",
                    )
                )
            elif not creds:
                out.append(
                    Finding(
                        "turn",
                        FAIL,
                        f"{where} answers, but no credential is given",
                        "set LR_TURN_SECRET to coturn's static-auth-secret",
                    )
                )
            elif scheme == "turn" and (
                refused := await _allocation_refused(config, server, host, port_n)
            ):
                out.append(
                    Finding(
                        "turn",
                        FAIL,
                        f"{where} refuses the relay's credential: {refused}",
                        "LR_TURN_SECRET must be coturn's static-auth-secret (or fix the URL's"
                        " user and password)",
                    )
                )
            else:
                took = "takes the relay's credential" if scheme == "turn" else "answers on TCP"
                out.append(Finding("turn", OK, f"{where} {took}"))
    if not out:
        out.append(
            Finding(
                "turn",
                WARN,
                "no TURN server: phones on networks that block UDP see a black screen",
                "run coturn beside the relay and set LR_ICE_SERVERS, LR_TURN_SECRET",
            )
        )
    return out


async def check_redis(config: Config) -> list[Finding]:
    """In cluster mode every node needs Redis (placement, the attendance stream), and checks
    tokens by its own clock: Redis's tells the drift. Nothing on one node."""
    if not config.redis_url:
        return []
    import time

    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(config.redis_url, socket_timeout=PROBE_TIMEOUT_S)
    where = urlsplit(config.redis_url)
    shown = f"{where.hostname}:{where.port or 6379}"  # never the password
    try:
        seconds, micros = await asyncio.wait_for(client.time(), PROBE_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        return [
            Finding(
                "redis",
                FAIL,
                f"Redis at {shown} does not answer ({type(exc).__name__})",
                "start redis-server, or correct REDIS_URL",
            )
        ]
    finally:
        await client.aclose()
    out = [Finding("redis", OK, f"Redis at {shown} answers")]
    drift = time.time() - (seconds + micros / 1e6)
    if abs(drift) > 5:
        out.append(
            Finding(
                "cluster-clock",
                FAIL,
                f"this clock is {drift:+.1f} s from Redis's",
                "synchronise every node and Redis's host by NTP",
            )
        )
    else:
        out.append(Finding("cluster-clock", OK, f"{drift:+.2f} s from Redis's clock"))
    return out


def check_clock() -> Finding:
    """Tokens and TURN credentials expire by the clock: a machine adrift refuses links that
    are valid, or takes ones that expired."""
    import subprocess

    try:
        said = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        said = ""
    if said == "yes":
        return Finding("clock", OK, "synchronised by NTP")
    return Finding(
        "clock",
        WARN,
        "cannot tell that the clock is synchronised" if said != "no" else "not synchronised",
        "keep NTP on (timedatectl set-ntp true, or chrony): tokens expire by this clock",
    )


async def diagnose(config: Config) -> list[Finding]:
    """Every check, in the order an operator fixes things."""
    out = [check_tls(config), check_ice_hosts(config), check_udp_ports(config)]
    out += await check_turn(config)
    out += await check_redis(config)
    out += [check_clock(), check_disk(config)]
    out += check_file_modes(config)
    return out


def failed(findings: list[Finding]) -> bool:
    return any(f.status == FAIL for f in findings)


def lines(findings: list[Finding]) -> list[str]:
    out = []
    for f in findings:
        out.append(f"{f.status:<4} {f.check:<14} {f.detail}")
        if f.fix and f.status != OK:
            out.append(f"     {'':<14} fix: {f.fix}")
    return out
