"""What the handlers share: built once by ``create_app`` and stored as ``app["state"]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from server.attendance.report_cache import Reports
from server.attendance.tracker import Attendance
from server.auth import TokenSigner
from server.cluster.node import Cluster
from server.config import Config
from server.histogram import Histogram
from server.lectures.floor import FloorBoard
from server.lectures.live import LiveSessions
from server.lectures.questions import QuestionBoard
from server.lectures.replays import ReplayJobs
from server.lectures.rollcalls import RollCalls
from server.programme.store import ProgrammeStore
from server.store import Store
from server.web.lean_socket import LeanSocket
from server.web.limits import Limits


@dataclass
class Counters:
    joins: int = 0
    socket_heartbeats: int = 0  # heartbeats recorded through them
    http_errors: dict[int, int] = field(default_factory=dict)


@dataclass
class AppState:
    config: Config
    store: Store
    signer: TokenSigner
    live: LiveSessions
    attendance: Attendance
    replays: ReplayJobs
    programme: ProgrammeStore
    questions: QuestionBoard
    metrics: Counters = field(default_factory=Counters)
    cluster: Cluster | None = None
    floor: FloorBoard = field(default_factory=FloorBoard)
    loop_lag: Histogram = field(default_factory=Histogram)  # how late the event loop runs
    # Pages' heartbeat WebSockets by viewer connection: closed when the connection ends.
    heartbeat_sockets: dict[str, set[LeanSocket]] = field(default_factory=dict)
    # Sessions' reports, kept up to date with the ledger as it is appended to.
    reports: Reports = field(init=False)
    limits: Limits = field(init=False)
    rollcalls: RollCalls = field(init=False)

    def __post_init__(self) -> None:
        self.reports = Reports(self.attendance.ledger)
        self.rollcalls = RollCalls(self.store, self.attendance)
        self.limits = Limits(self.config)
        self.attendance.ledger.follow(self.reports.follow)  # an edge's: nothing to follow

    @property
    def heartbeat_sockets_open(self) -> int:
        return sum(len(sockets) for sockets in self.heartbeat_sockets.values())


STATE = web.AppKey("state", AppState)
