"""``create_app(config)``: the one place the application is assembled."""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web

from media import native
from server.attendance.ledger import Ledger
from server.attendance.signing import CheckpointLog, LedgerKey
from server.attendance.sink import AttendanceSink
from server.attendance.tracker import Attendance
from server.auth import signer_for
from server.cluster.node import Cluster
from server.cluster.outbox import StreamLedger
from server.config import Config, networks
from server.histogram import watch_loop_lag
from server.ice import gather_as_configured
from server.lectures.live import LiveSessions
from server.lectures.questions import QuestionBoard
from server.lectures.replays import ReplayJobs
from server.programme.store import ProgrammeStore
from server.retention import sweep
from server.routes import api, internal, pages, whip
from server.routes import attendance as attendance_routes
from server.routes import floor as floor_routes
from server.routes import heartbeats as heartbeat_routes
from server.routes import library as library_routes
from server.routes import links as link_routes
from server.routes import programme as programme_routes
from server.routes import qa as qa_routes
from server.routes import replay as replay_routes
from server.routes import rollcalls as rollcall_routes
from server.state import STATE, AppState
from server.store import Store
from server.web.cors import cors_middleware_for
from server.web.errors import error_middleware
from server.web.headers import install as install_headers
from server.web.metrics import metrics_handler
from server.web.openapi import openapi_handler
from server.web.proxies import forwarded_middleware
from server.workers.pool import WorkerPool

log = logging.getLogger(__name__)

# How the app is run (``serve``; the tests' relay too). aiohttp's access log would write every
# request line, the page links' tokens in their query included, and a line per heartbeat.
RUNNER_OPTIONS: dict = {"access_log": None}

RETENTION_SWEEP_S = 6 * 3600


def create_app(config: Config, workers: int = 1) -> web.Application:
    """The relay; with ``workers`` > 1 it also answers its media workers (started by
    ``start_workers`` once the app listens)."""
    gather_as_configured(config)
    # the fan-out loop, chosen once (LR_FASTPATH; Python when the native one was not built);
    # `serve` names it in its banner
    native.use(config.fastpath)
    store = Store(config.store_path)
    live = LiveSessions(config, store)
    signer = signer_for(config.secret, config.data_dir)
    cluster = None
    if config.redis_url:
        cluster = Cluster(config, signer.internal_token(), live.viewer_count, workers)
        live.use_cluster(cluster)
    # the attendance sink, chosen once (server/attendance/sink.py): an edge has no ledger
    ledger: AttendanceSink
    if cluster is not None and not config.cluster_home:
        ledger = StreamLedger(
            cluster.redis,
            cluster.instance_name,
            config.outbox_path,
            config.ledger_commit_interval_s,
        )
    else:
        ledger = Ledger(
            config.ledger_path, config.ledger_commit_interval_s, process=config.ledger_process
        )
    attendance = Attendance(
        ledger,
        LedgerKey.load_or_create(config.ledger_key_path),
        CheckpointLog(config.checkpoint_log_path),
        live.stop_peer,
        config.heartbeat_timeout_s,
        config.checkpoint_interval_s,
        config.heartbeat_min_gap_s,
        # the replay page reports every heartbeat interval (and on play and pause)
        replay_min_gap_s=config.heartbeat_interval_s / 2,
        relay_evidence=live.receiver_highest,
        seen_interval_s=config.heartbeat_interval_s,
    )
    live.listeners.append(attendance.on_media_event)
    replays = ReplayJobs(config.media_root, sys.executable)
    programme = ProgrammeStore(config.store_path)
    questions = QuestionBoard(config.store_path)
    state = AppState(config, store, signer, live, attendance, replays, programme, questions)
    state.cluster = cluster
    live.listeners.append(lambda event: heartbeat_routes.close_heartbeat_sockets(state, event))
    live.listeners.append(lambda event: heartbeat_routes.push_layer(state, event))
    state.rollcalls.listeners.append(lambda call: heartbeat_routes.push_rollcall(state, call))
    if workers > 1:
        live.use_pool(WorkerPool(workers, signer.internal_token(), worker_env(config)))

    # the client's own address first (behind a trusted proxy), then CORS and errors
    middlewares = [
        forwarded_middleware(networks(config.trusted_proxies)),
        cors_middleware_for(config.cors_origins),
        error_middleware,
    ]
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[STATE] = state
    install_headers(app, cluster=cluster is not None, tls=config.tls_cert is not None)
    whip.add_routes(app)
    api.add_routes(app)
    attendance_routes.add_routes(app)
    heartbeat_routes.add_routes(app)
    link_routes.add_routes(app)
    replay_routes.add_routes(app)
    library_routes.add_routes(app)
    programme_routes.add_routes(app)
    qa_routes.add_routes(app)
    floor_routes.add_routes(app)
    rollcall_routes.add_routes(app)
    internal.add_routes(app)
    pages.add_routes(app)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/api/openapi.json", openapi_handler)

    background: list[asyncio.Task] = []

    async def retention() -> None:
        """Apply the retention policy now and then (off when both periods are 0)."""
        while True:
            removed = sweep(
                config.media_root, config.recording_retention_days, config.replay_retention_days
            )
            if removed:
                log.info("retention removed %d files", len(removed))
            await asyncio.sleep(RETENTION_SWEEP_S)

    async def warm_reports() -> None:
        """Each live session's report fold reads in, every checkpoint interval and on a
        worker thread, what it could not follow as it was appended (Reports.follow): events
        the CLI or the cluster's stream appended, or a lecture already under way when the
        server started. Ending a long lecture (its report credits the members) then folds
        little, not the whole lecture."""
        while True:
            await asyncio.sleep(config.checkpoint_interval_s)
            for sid in attendance.live_sessions():
                try:
                    await asyncio.to_thread(state.reports.refresh, sid, paced=True)
                except Exception:  # noqa: BLE001 - the report is built in full when asked
                    log.exception("bringing the report of %s up to date failed", sid)

    async def startup(app: web.Application) -> None:
        attendance.recover()
        attendance.start()
        background.append(asyncio.ensure_future(watch_loop_lag(state.loop_lag)))
        ledger.start()
        if ledger.holds_record:  # an edge node has no ledger of its own
            background.append(asyncio.ensure_future(warm_reports()))
        if ledger.holds_record:
            state.rollcalls.begin()  # the lectures' planned roll calls
        if config.recording_retention_days > 0 or config.replay_retention_days > 0:
            background.append(asyncio.ensure_future(retention()))

    async def cleanup(app: web.Application) -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await replays.close()
        await state.rollcalls.close()
        await state.limits.pending.close()
        await state.live.close()
        if live.pool is not None:
            await live.pool.close()
        await attendance.close()
        await ledger.aclose()  # an edge's last events leave to Redis, while it is open
        if cluster is not None:
            await cluster.close()
        programme.close()
        questions.close()
        store.close()

    async def shutdown(app: web.Application) -> None:
        heartbeat_routes.close_all_heartbeat_sockets(state)

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app


def worker_env(config: Config) -> dict[str, str]:
    """What a media worker needs of the primary's settings, as its environment."""
    env = {
        "LR_KEYFRAME_INTERVAL": str(config.keyframe_interval_s),
        "LR_LAYER_DOWN_LOSS": str(config.layer_down_loss),
        "LR_LAYER_UP_AFTER": str(config.layer_up_after_s),
        "LR_LOG_LEVEL": config.log_level,
        "LR_FASTPATH": config.fastpath,
        "LR_ICE_SERVERS": ",".join(s.as_url() for s in config.ice_servers),
        "LR_ICE_PEER_NETWORKS": ",".join(config.ice_peer_networks or ()),
        "LR_TURN_SECRET": config.turn_secret or "",
        "LR_TURN_TTL": str(config.turn_ttl_s),
        "LR_ICE_HOSTS": (
            "none" if config.ice_host_addresses == () else ",".join(config.ice_host_addresses or ())
        ),
    }
    return env
