"""``lecture-relay``: serve, and manage sessions and tokens from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import DEFAULT_THRESHOLD, Config, config_from_env, host_addresses
from server.files import private_file

if TYPE_CHECKING:
    from server.attendance.direct import DirectLedger


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="data directory (default ./data)")


def _config(args: argparse.Namespace) -> Config:
    config = config_from_env()
    overrides: dict = {
        "data_dir": getattr(args, "data", None),
        "media_dir": getattr(args, "media", None),
    }
    for name in ("host", "port"):
        overrides[name] = getattr(args, name, None)
    if getattr(args, "ice_host", None):
        overrides["ice_host_addresses"] = host_addresses(tuple(args.ice_host))
    return config.with_overrides(**overrides)


def _signer(config: Config):
    from server.auth import signer_for

    return signer_for(config.secret, config.data_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
            f"Lecture Relay listening on {config.base_url} ({workers} worker(s){mode})",
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
    config = _config(args)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s writer %(name)s: %(message)s"
    )
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
    from server.media_worker import run_worker
    from server.runtime import tune_gc

    config = config_from_env()
    logging.basicConfig(
        level=config.log_level,
        format=f"%(asctime)s %(levelname)s worker{args.index} %(name)s: %(message)s",
    )
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


def cmd_session_create(args: argparse.Namespace) -> int:
    from server.lectures.service import DEFAULT_RULE, create_lecture, credit_rule
    from server.links import session_links
    from server.refusals import Refused
    from server.store import Store

    config = _config(args)
    wanted = {"credit_threshold": args.credit_threshold, "replay_credit": not args.no_replay_credit}
    store = Store(config.store_path)
    try:
        rule = credit_rule(wanted)
        # the ledger (and the signing key) only for a rule to record: a new lecture with the
        # default one writes nothing there
        ledger = _direct_ledger(config) if rule != DEFAULT_RULE else nullcontext(_NOTHING_SIGNED)
        with ledger as record:
            made = create_lecture(
                store,
                record,
                args.title,
                "cli",
                video_codec=args.video_codec,
                recorded=not args.no_record,
                rule=rule,
            )
            session = asyncio.run(made)
    except Refused as exc:
        print(f"lecture-relay: {exc.reason}", file=sys.stderr)
        return 2
    finally:
        store.close()
    links = session_links(config, _signer(config), session)
    if args.json:
        print(json.dumps(links, ensure_ascii=False, indent=2))
    else:
        print(f"会话 {links['session_id']}: {links['title']}")
        print(f"  主讲页面 (lecturer): {links['urls']['lecturer']}")
        print(f"  手机观看 (watch):    {links['urls']['watch']}")
        print(f"  教室入口 (room):     {links['urls']['room_join']}")
        for room in links["rooms"]:
            print(f"    {room['name']}: 教室码 {room['code']}")
    return 0


def cmd_session_list(args: argparse.Namespace) -> int:
    from server.store import Store

    store = Store(_config(args).store_path)
    try:
        for s in store.list_sessions():
            print(f"{s.id}\t{s.status}\t{s.video_codec}\t{s.title}")
    finally:
        store.close()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    config = _config(args)
    print(_signer(config).issue(args.role, args.session, args.subject, args.ttl))
    return 0


class _NothingSigned:
    """The record of a command that has nothing to sign."""

    async def append_signed(self, session: str, event) -> None:
        raise RuntimeError(f"{event!r} was to be signed without a ledger")


_NOTHING_SIGNED = _NothingSigned()


@contextmanager
def _direct_ledger(config: Config, must_exist: bool = False) -> Iterator[DirectLedger]:
    """The ledger file with the signing key, for a command that appends (and signs) itself;
    ``must_exist``: a command that reads a record refuses to make an empty ledger."""
    from server.attendance.direct import DirectLedger
    from server.attendance.ledger import Ledger
    from server.attendance.signing import CheckpointLog, LedgerKey

    ledger = _ledger(config) if must_exist else Ledger(config.ledger_path)
    try:
        key = LedgerKey.load_or_create(config.ledger_key_path)
        yield DirectLedger(ledger, key, CheckpointLog(config.checkpoint_log_path))
    finally:
        ledger.close()


def _ledger(config: Config):
    from server.attendance.ledger import Ledger

    path = config.ledger_path
    if not path.exists():
        raise SystemExit(f"lecture-relay: no ledger at {path}")
    return Ledger(path)


def cmd_keys_show(args: argparse.Namespace) -> int:
    from server.attendance.signing import LedgerKey, public_key_text

    config = _config(args)
    key = LedgerKey.load_or_create(config.ledger_key_path)
    print(f"public key:  {public_key_text(key.public)}")
    print(f"fingerprint: {key.fingerprint}")
    print(f"key file:    {config.ledger_key_path}")
    return 0


def _text_or_file(value: str) -> str:
    path = Path(value)
    return path.read_text() if path.is_file() else value


def cmd_verify(args: argparse.Namespace) -> int:
    from server.attendance.offline import verify_export_file
    from server.attendance.signing import (
        CheckpointLog,
        LedgerKey,
        checkpoint_from,
        parse_public_key,
    )
    from server.attendance.verify import verify

    config = _config(args)
    if args.export:
        if not args.pubkey:
            print("lecture-relay: --export needs --pubkey (text or a file)", file=sys.stderr)
            return 2
        key_text = Path(args.pubkey).read_text() if Path(args.pubkey).exists() else args.pubkey
        verdict = verify_export_file(Path(args.export), parse_public_key(key_text))
    else:
        if not args.session:
            print("lecture-relay: name a SESSION or give --export FILE", file=sys.stderr)
            return 2
        key = LedgerKey.load_or_create(config.ledger_key_path)
        public = parse_public_key(_text_or_file(args.pubkey)) if args.pubkey else key.public
        receipt = None
        if args.receipt:
            receipt = checkpoint_from(json.loads(Path(args.receipt).read_text()))
        ledger = _ledger(config)
        try:
            if ledger.head(args.session)[0] == 0:
                print(f"lecture-relay: no events for session {args.session}", file=sys.stderr)
                return 2
            checkpoints = ledger.checkpoints(args.session)
            checkpoints += CheckpointLog(config.checkpoint_log_path).read(args.session)
            verdict = verify(args.session, ledger.rows(args.session), checkpoints, public, receipt)
        finally:
            ledger.close()
    print(verdict.summary())
    return 0 if verdict.ok else 1


def _emit(body: bytes | Iterable[bytes], out: str | None, what: str) -> None:
    """Write an export (whole, or in pieces) to --out, saying what was written, or to
    standard output."""
    pieces = [body] if isinstance(body, bytes) else body
    if out:  # names, phone numbers, personal links' tokens
        private_file(Path(out))
    with open(out, "wb") if out else nullcontext(sys.stdout.buffer) as sink:
        for piece in pieces:
            sink.write(piece)
    if out:
        print(f"wrote {what} to {out}", file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    from server.attendance.events import Export
    from server.attendance.exports import render_chunks
    from server.attendance.report_cache import report_for
    from server.attendance.signing import receipt
    from server.store import Store

    config = _config(args)
    store = Store(config.store_path)
    try:
        with _direct_ledger(config, must_exist=True) as record:
            session = store.get_session(args.session)
            if session is None:
                print(f"lecture-relay: unknown session {args.session}", file=sys.stderr)
                return 2
            record.append_signed_now(args.session, Export("cli", args.format, args.phones))
            ledger = record.ledger
            report = report_for(store, ledger, session)
            checkpoints = ledger.checkpoints(args.session)
            finals = [c for c in checkpoints if c.final]
            rec = receipt(finals[-1], record.key.public) if finals else None
            chunks = render_chunks(args.format, report, ledger, checkpoints, rec, args.phones)
            _emit(chunks, args.out, f"{len(report.participants)} participants")
    finally:
        store.close()
    return 0


def cmd_roster_import(args: argparse.Namespace) -> int:
    from server.roster import import_file
    from server.store import Store

    config = _config(args)
    store = Store(config.store_path)

    def progress(n: int) -> None:
        width = 30
        done = min(n * width // max(args.expect, n, 1), width)
        print(f"\r[{'#' * done}{'.' * (width - done)}] {n} rows", end="", file=sys.stderr)

    started = time.monotonic()
    try:
        result = import_file(store, Path(args.file), progress)
    finally:
        store.close()
    print(file=sys.stderr)
    for number, reason in result.errors[: args.max_errors]:
        print(f"row {number}: {reason}", file=sys.stderr)
    if len(result.errors) > args.max_errors:
        print(f"... and {len(result.errors) - args.max_errors} more errors", file=sys.stderr)
    print(
        f"imported {result.imported} of {result.rows} rows, {len(result.errors)} errors, "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0 if result.imported or not result.errors else 1


def cmd_links(args: argparse.Namespace) -> int:
    from server.attendance.events import Export
    from server.links import member_links, to_csv_bytes, to_xlsx_bytes
    from server.store import Store

    config = _config(args)
    store = Store(config.store_path)
    try:
        session = store.get_session(args.session)
        if session is None:
            print(f"lecture-relay: unknown session {args.session}", file=sys.stderr)
            return 2
        members = store.members(args.township)
        if not members:
            where = f"no member of {args.township}" if args.township else "no member"
            print(f"lecture-relay: {where} in the roster (roster import FILE)", file=sys.stderr)
            return 2
        rows = member_links(config, _signer(config), session, members)
    finally:
        store.close()
    # names and tokens handed out: recorded in the session's ledger, as any export
    with _direct_ledger(config) as record:
        record.append_signed_now(args.session, Export("cli", f"links-{args.format}", False))
    body = to_xlsx_bytes(rows) if args.format == "xlsx" else to_csv_bytes(rows)
    _emit(body, args.out, f"{len(rows)} personal links")
    return 0


def cmd_replay_build(args: argparse.Namespace) -> int:
    from server.replay import run_job

    config = _config(args)
    state = run_job(config.media_root, args.session)
    print(
        f"replay of {args.session}: {state.state}"
        + (
            f" ({state.media_seconds} s of media in {state.took_seconds} s)"
            if state.state == "done"
            else ""
        )
        + (f": {state.error}" if state.error else "")
    )
    return 0 if state.state == "done" else 1


def cmd_replay_status(args: argparse.Namespace) -> int:
    from server.replay import ReplayState, replay_paths

    state = ReplayState.load(replay_paths(_config(args).media_root, args.session)[2])
    if state is None:
        print(f"no replay job for {args.session}")
        return 1
    print(json.dumps(state.__dict__, ensure_ascii=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from server.demo import print_links, seed

    config = _config(args)
    print_links(seed(config), config.base_url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lecture-relay", description="Lecture Relay")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay (embedded mode: one process, SQLite)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument(
        "--ice-host",
        action="append",
        help="host address to offer as ICE candidate (repeatable; default: every interface)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="forwarding processes (default: one per core); more than 1 starts media workers",
    )
    _common(serve)
    serve.set_defaults(func=cmd_serve)

    writer = sub.add_parser(
        "ledger-writer", help="cluster mode: write the Redis attendance stream into the ledger"
    )
    _common(writer)
    writer.set_defaults(func=cmd_ledger_writer)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--primary", required=True)
    worker.set_defaults(func=cmd_worker)

    session = sub.add_parser("session", help="lecture sessions")
    ssub = session.add_subparsers(dest="session_command", required=True)
    create = ssub.add_parser("create", help="create a session with its 15 township rooms")
    create.add_argument("--title", required=True)
    create.add_argument(
        "--video-codec",
        default="H264",
        choices=["H264", "VP8", "h264", "vp8"],
        help="H264 (default: every phone decodes it, replays need no transcode) or VP8",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.add_argument("--no-record", action="store_true", help="do not record this lecture")
    create.add_argument(
        "--credit-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="the share of the lecture a member watches to be credited, 0.01-1 (default 0.8)",
    )
    create.add_argument(
        "--no-replay-credit", action="store_true", help="replay time does not count toward credit"
    )
    _common(create)
    create.set_defaults(func=cmd_session_create)
    listing = ssub.add_parser("list", help="list sessions")
    _common(listing)
    listing.set_defaults(func=cmd_session_list)

    demo = sub.add_parser("demo", help="create the demo county once and print its links")
    _common(demo)
    demo.set_defaults(func=cmd_demo)

    roster = sub.add_parser("roster", help="the member roster")
    rsub = roster.add_subparsers(dest="roster_command", required=True)
    imp = rsub.add_parser("import", help="import members from CSV or XLSX")
    imp.add_argument("file")
    imp.add_argument("--expect", type=int, default=30000, help="rows expected (progress bar)")
    imp.add_argument("--max-errors", type=int, default=50, help="errors to print")
    _common(imp)
    imp.set_defaults(func=cmd_roster_import)

    links = sub.add_parser("links", help="personal join links for the roster's members")
    links.add_argument("session")
    links.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    links.add_argument("--township", help="only this township's members")
    links.add_argument("--out")
    _common(links)
    links.set_defaults(func=cmd_links)

    replay = sub.add_parser("replay", help="the replay file of an ended session")
    rpsub = replay.add_subparsers(dest="replay_command", required=True)
    rb = rpsub.add_parser("build", help="make the H.264 + AAC MP4 (normally run by the server)")
    rb.add_argument("session")
    rb.add_argument("--media", type=Path, help="recordings and replays directory")
    _common(rb)
    rb.set_defaults(func=cmd_replay_build)
    rs = rpsub.add_parser("status", help="the replay job's state")
    rs.add_argument("session")
    _common(rs)
    rs.set_defaults(func=cmd_replay_status)

    keys = sub.add_parser("keys", help="the ledger signing key")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    show = ksub.add_parser("show", help="print the public key and its fingerprint")
    _common(show)
    show.set_defaults(func=cmd_keys_show)

    ver = sub.add_parser("verify", help="verify a session's attendance record")
    ver.add_argument("session", nargs="?")
    ver.add_argument("--receipt", help="a receipt file kept outside the server")
    ver.add_argument("--export", help="verify an exported JSON file offline")
    ver.add_argument("--pubkey", help="the server's public key (text or file)")
    _common(ver)
    ver.set_defaults(func=cmd_verify)

    audit = sub.add_parser("audit", help="export a session's attendance")
    audit.add_argument("session")
    audit.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
    audit.add_argument("--out", help="file to write (default: standard output)")
    audit.add_argument("--phones", action="store_true", help="include phone numbers unmasked")
    _common(audit)
    audit.set_defaults(func=cmd_audit)

    token = sub.add_parser("token", help="issue a signed token")
    token.add_argument("role", choices=["admin", "school", "lecturer", "viewer", "room", "member"])
    token.add_argument("--session")
    token.add_argument("--subject")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default one day)")
    _common(token)
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
