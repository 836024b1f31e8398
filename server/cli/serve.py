"""Running the relay: ``serve``, the cluster's ``ledger-writer``, a media ``worker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
from typing import TYPE_CHECKING

from media import native
from server.config import Config, config_from_env
from server.logs import setup_logging

if TYPE_CHECKING:
    pass

from server.cli.common import config_of


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_of(args)
    setup_logging(config, "serve")
    ssl_context = None
    if config.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"lecture-relay: cannot load TLS certificate: {exc}", file=sys.stderr)
            return 2
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        print("lecture-relay: --workers must be at least 1", file=sys.stderr)
        return 2
    _raise_open_files_limit()
    try:
        asyncio.run(_serve(config, ssl_context, workers))
    except KeyboardInterrupt:
        pass
    except (RuntimeError, PermissionError) as exc:  # a secret.key others may read, ...
        print(f"lecture-relay: {exc}", file=sys.stderr)
        return 1
    return 0


def _raise_open_files_limit() -> None:
    """Each viewer holds a UDP socket and each page a heartbeat WebSocket: a soft limit of
    1,024 open files (a common default) would refuse joins long before a core is busy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("open files stay at %d: %s", soft, exc)


async def _serve(config: Config, ssl_context, workers: int) -> None:
    """Listen, start the media workers (on an internal loopback port), run until a signal."""
    import signal

    from aiohttp import web

    from server.app import RUNNER_OPTIONS, create_app
    from server.runtime import pace_gc, tune_gc
    from server.state import STATE

    app = create_app(config, workers)
    runner = web.AppRunner(app, **RUNNER_OPTIONS)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context).start()
        pool = app[STATE].live.pool
        if pool is not None:
            internal = web.TCPSite(runner, "127.0.0.1", 0)
            await internal.start()
            port = internal._server.sockets[0].getsockname()[1]
            await pool.start(f"http://127.0.0.1:{port}")
        cluster = app[STATE].cluster
        writer = None
        if cluster is not None:
            await cluster.start()
            if config.cluster_home and config.ledger_writer:
                attendance = app[STATE].attendance
                writer = _start_writer(
                    config, cluster.redis, attendance.ledger, attendance.appended_to
                )
        tune_gc()  # once start-up's objects exist: they are frozen out of every collection
        pacer = asyncio.ensure_future(pace_gc(config.gc_pace_s))
        mode = f", cluster node {cluster.id}" if cluster is not None else ""
        print(
            f"Lecture Relay listening on {config.base_url} ({workers} worker(s){mode}, "
            f"{native.path()} fan-out)",
            flush=True,
        )
        await stop.wait()
        pacer.cancel()
        if writer is not None:
            writer[0].stop()
            writer[1].cancel()
    finally:
        await runner.cleanup()


def _start_writer(config: Config, redis, ledger, on_written=None):
    from server.cluster.stream import StreamWriter

    writer = StreamWriter(redis, ledger, lost_after_s=2 * config.node_ttl_s, on_written=on_written)
    return writer, asyncio.ensure_future(writer.run())


def cmd_ledger_writer(args: argparse.Namespace) -> int:
    """Cluster mode: write the attendance stream into this data directory's ledger."""
    config = config_of(args)
    setup_logging(config, "writer")
    if not config.redis_url:
        print("lecture-relay ledger-writer: set REDIS_URL", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run_writer(config))
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"lecture-relay: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run_writer(config: Config) -> None:
    import signal

    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from server.attendance.ledger import Ledger
    from server.cluster.stream import StreamWriter

    redis = aioredis.Redis.from_url(config.redis_url, decode_responses=True, socket_timeout=5)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        raise RuntimeError(f"cannot reach Redis at {config.redis_url}: {exc}") from None
    ledger = Ledger(config.ledger_path)
    writer = StreamWriter(redis, ledger, lost_after_s=2 * config.node_ttl_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, writer.stop)
    print(f"ledger writer: {config.redis_url} -> {config.ledger_path}", flush=True)
    try:
        await writer.run()
    finally:
        ledger.close()
        await redis.aclose()


def cmd_worker(args: argparse.Namespace) -> int:
    """A media worker started by ``serve --workers N`` (not for people to run)."""
    from server.runtime import tune_gc
    from server.workers.media_worker import run_worker

    config = config_from_env()
    setup_logging(config, f"worker{args.index}")
    token = os.environ.get("LR_INTERNAL_TOKEN", "")
    if not token:
        print("lecture-relay worker: started by serve --workers only", file=sys.stderr)
        return 2
    try:
        tune_gc()
        asyncio.run(run_worker(args.index, config, args.primary, token))
    except KeyboardInterrupt:
        pass
    return 0
