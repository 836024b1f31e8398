"""``create_app(config)``: the one place the application is assembled."""

from __future__ import annotations

import sys

from aiohttp import web

from media.fastpath import restrict_host_addresses
from server.attendance.ledger import Ledger
from server.attendance.signing import CheckpointLog, LedgerKey
from server.attendance.tracker import Attendance
from server.auth import TokenSigner, load_or_create_secret
from server.config import Config
from server.errors import error_middleware
from server.live import LiveSessions
from server.metrics import metrics_handler
from server.replay import ReplayJobs
from server.routes import api, pages, whip
from server.routes import attendance as attendance_routes
from server.routes import replay as replay_routes
from server.state import STATE, AppState
from server.store import Store


def create_app(config: Config) -> web.Application:
    restrict_host_addresses(config.ice_host_addresses)
    store = Store(config.data_dir / "relay.sqlite3")
    secret = config.secret.encode() if config.secret else load_or_create_secret(config.data_dir)
    live = LiveSessions(config, store)
    ledger = Ledger(config.data_dir / "ledger.sqlite3")
    attendance = Attendance(
        ledger,
        LedgerKey.load_or_create(config.ledger_key_path),
        CheckpointLog(config.data_dir / "checkpoints.jsonl"),
        live.stop_peer,
        config.heartbeat_timeout_s,
        config.checkpoint_interval_s,
    )
    live.listeners.append(attendance.on_media_event)
    replays = ReplayJobs(config.data_dir, sys.executable)
    state = AppState(config, store, TokenSigner(secret), live, attendance, replays)

    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[STATE] = state
    whip.add_routes(app)
    api.add_routes(app)
    attendance_routes.add_routes(app)
    replay_routes.add_routes(app)
    pages.add_routes(app)
    app.router.add_get("/metrics", metrics_handler)

    async def startup(app: web.Application) -> None:
        attendance.recover()
        attendance.start()

    async def cleanup(app: web.Application) -> None:
        await replays.close()
        await state.live.close()
        await attendance.close()
        ledger.close()
        store.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app
