"""Prometheus text exposition of the relay's counters, gathered at scrape time."""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from media import native
from server.auth import authorize
from server.histogram import Histogram
from server.state import STATE, AppState
from server.web.bearer import bearer_token
from server.web.errors import HTTPProblem


def render(state: AppState) -> str:
    media = list(state.live.sessions.values())
    forwarders = [f for m in media for f in (m.audio, m.video)]

    def total(attr: str, kind: str | None = None) -> int:
        return sum(getattr(f, attr) for f in forwarders if kind is None or f.kind == kind)

    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    def histogram(name: str, help_text: str, h: Histogram) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} histogram")
        lines.extend(f'{name}_bucket{{le="{le}"}} {count}' for le, count in h.cumulative())
        lines.append(f"{name}_sum {round(h.sum, 6)}")
        lines.append(f"{name}_count {h.count}")

    histogram(
        "lr_event_loop_lag_seconds",
        "How late the event loop ran a timer due every 0.1 s: what every answer waits besides "
        "its own work.",
        state.loop_lag,
    )
    metric("lr_sessions", "gauge", "Sessions with media state in this process.", [("", len(media))])
    metric(
        "lr_fastpath",
        "gauge",
        "The fan-out loop this process forwards on (1 for the one in use): native "
        "(media/_fanout.c) or python (LR_FASTPATH, or the native one not built).",
        [(f'{{path="{p}"}}', int(native.path() == p)) for p in ("native", "python")],
    )
    metric(
        "lr_publishers",
        "gauge",
        "Connected publishers.",
        [("", sum(1 for m in media if m.live))],
    )
    metric(
        "lr_subscribers",
        "gauge",
        "Viewer connections.",
        [("", sum(len(m.viewers) for m in media))],
    )
    metric("lr_whep_joins_total", "counter", "WHEP joins answered.", [("", state.metrics.joins)])
    metric(
        "lr_heartbeat_sockets",
        "gauge",
        "Pages' heartbeat WebSockets open.",
        [("", state.heartbeat_sockets_open)],
    )
    metric(
        "lr_socket_heartbeats_total",
        "counter",
        "Heartbeats recorded through the pages' WebSockets (the rest came as POSTs).",
        [("", state.metrics.socket_heartbeats)],
    )
    ledger = state.attendance.ledger  # this node's own, or an edge's stream to the home's
    for name, kind, help_text, value in ledger.measures():
        metric(name, kind, help_text, [("", value)])
    for name, help_text, values in ledger.histograms():
        histogram(name, help_text, values)
    for attr, name, help_text in (
        ("packets_in", "lr_packets_received_total", "RTP packets received from publishers."),
        ("packets_out", "lr_packets_forwarded_total", "RTP packets sent to viewers."),
        ("bytes_out", "lr_bytes_forwarded_total", "RTP payload bytes sent to viewers."),
        ("retransmits", "lr_nack_retransmits_total", "Packets resent from the cache on NACK."),
        ("send_errors", "lr_send_errors_total", "Failed sends to viewers."),
    ):
        metric(
            name,
            "counter",
            help_text,
            [(f'{{kind="{k}"}}', total(attr, k)) for k in ("audio", "video")],
        )
    metric(
        "lr_keyframe_requests_total",
        "counter",
        "Keyframe requests: sent upstream, or merged into one already sent.",
        [
            ('{result="sent"}', sum(m.video.keyframes.sent for m in media)),
            ('{result="merged"}', sum(m.video.keyframes.merged for m in media)),
        ],
    )
    downtracks = [dt for m in media for v in m.viewers.values() for _, dt in v.tracks.values()]
    reported = [dt for dt in downtracks if dt.rr is not None]
    rtts = [dt.rtt for dt in downtracks if dt.rtt is not None]
    metric(
        "lr_viewer_loss_ratio",
        "gauge",
        "Fraction lost over viewers' latest receiver reports: mean and worst.",
        [
            (
                '{stat="mean"}',
                round(sum(dt.rr[1] for dt in reported) / 256 / len(reported), 4) if reported else 0,
            ),
            ('{stat="max"}', round(max((dt.rr[1] for dt in reported), default=0) / 256, 4)),
        ],
    )
    metric(
        "lr_viewer_rtt_seconds",
        "gauge",
        "Round trip to viewers from their receiver reports: mean and worst.",
        [
            ('{stat="mean"}', round(sum(rtts) / len(rtts), 4) if rtts else 0),
            ('{stat="max"}', round(max(rtts, default=0), 4)),
        ],
    )
    layers = [getattr(v, "layers", None) for m in media for v in m.viewers.values()]
    metric(
        "lr_viewer_layer",
        "gauge",
        "Viewers on each quality layer: the full lecture, the low copy, sound only.",
        [
            (f'{{layer="{name}"}}', sum(1 for c in layers if c is not None and c.layer == name))
            for name in ("high", "low", "audio")
        ],
    )
    metric(
        "lr_viewer_layer_switches_total",
        "counter",
        "Layer changes the relay made for viewers now connected.",
        [("", sum(c.switches for c in layers if c is not None))],
    )
    paths = [getattr(v, "path", None) for m in media for v in m.viewers.values()]
    metric(
        "lr_viewers_relayed",
        "gauge",
        "Viewers reached through TURN (or another non-UDP-host path): sent through aioice's "
        "queue, not the direct socket, and costing the TURN server their bandwidth.",
        [("", sum(1 for p in paths if p is not None and not p.direct))],
    )
    recorders = [m.recorder for m in media if m.recorder is not None]
    metric(
        "lr_recordings_active",
        "gauge",
        "Sessions being recorded.",
        [("", sum(1 for r in recorders if not r.closed))],
    )
    for attr, name, help_text in (
        ("packets", "lr_recording_packets_total", "RTP packets handed to recorders."),
        ("bytes", "lr_recording_bytes_total", "Media bytes written to recordings."),
        ("cpu_s", "lr_recording_cpu_seconds_total", "CPU spent depacketizing and muxing."),
    ):
        metric(
            name, "counter", help_text, [("", round(sum(getattr(r, attr) for r in recorders), 6))]
        )
    pool = state.live.pool
    if pool is not None:
        handles = list(pool.workers.values())
        metric(
            "lr_workers_up",
            "gauge",
            "Media worker processes running, this one (worker 0) included.",
            [("", 1 + sum(h.up.is_set() for h in handles))],
        )
        metric(
            "lr_worker_viewers",
            "gauge",
            "Viewers placed on each media worker.",
            [('{worker="0"}', pool.local_viewers())]
            + [(f'{{worker="{h.index}"}}', h.viewers) for h in handles],
        )
        metric(
            "lr_worker_packets_forwarded_total",
            "counter",
            "RTP packets each media worker sent to its viewers.",
            [(f'{{worker="{h.index}"}}', h.counters.get("packets_out", 0)) for h in handles],
        )
        metric(
            "lr_worker_restarts_total",
            "counter",
            "Media workers started again after they died.",
            [("", sum(max(h.starts - 1, 0) for h in handles))],
        )
    cluster = state.cluster
    if cluster is not None:
        metric("lr_cluster_redis_up", "gauge", "Redis reachable.", [("", int(cluster.redis_ok))])
        metric(
            "lr_cluster_node_share",
            "gauge",
            "Viewers per worker of each live node, as the registry last said.",
            [(f'{{node="{n.id}"}}', round(n.share, 3)) for n in cluster.known_nodes],
        )
        metric("lr_cluster_nodes", "gauge", "Live nodes.", [("", len(cluster.known_nodes))])
    return "\n".join(lines) + "\n"


def may_scrape(request: web.Request, state: AppState) -> None:
    """With ``LR_METRICS_TOKEN``, the scraper shows it (or an admin token); without, only a
    caller on this machine may read (the numbers tell how many watch, from how many rooms)."""
    token = bearer_token(request)
    expected = state.config.metrics_token
    if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    if token:
        authorize(state.signer.verify(token), ("admin",))
        return
    if expected:
        raise HTTPProblem(401, "/metrics needs its bearer token", {"WWW-Authenticate": "Bearer"})
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPProblem(403, "/metrics is for this machine only unless LR_METRICS_TOKEN is set")


async def metrics_handler(request: web.Request) -> web.Response:
    may_scrape(request, request.app[STATE])
    body = render(request.app[STATE])
    return web.Response(text=body, content_type="text/plain", charset="utf-8")
