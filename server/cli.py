"""``lecture-relay``: serve, and manage sessions and tokens from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from server.config import Config, config_from_env


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="data directory (default ./data)")


def _config(args: argparse.Namespace) -> Config:
    config = config_from_env()
    overrides: dict = {"data_dir": getattr(args, "data", None)}
    for name in ("host", "port"):
        overrides[name] = getattr(args, name, None)
    if getattr(args, "ice_host", None):
        overrides["ice_host_addresses"] = tuple(args.ice_host)
    return config.with_overrides(**overrides)


def _signer(config: Config):
    from server.auth import TokenSigner, load_or_create_secret

    secret = config.secret.encode() if config.secret else load_or_create_secret(config.data_dir)
    return TokenSigner(secret)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app

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
    app = create_app(config)
    print(f"Lecture Relay listening on {config.base_url}", flush=True)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
    )
    return 0


def cmd_session_create(args: argparse.Namespace) -> int:
    from server.links import session_links
    from server.store import TOWNSHIPS, Store

    config = _config(args)
    store = Store(config.data_dir / "relay.sqlite3")
    try:
        session = store.create_session(args.title, TOWNSHIPS, args.video_codec.upper())
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

    store = Store(_config(args).data_dir / "relay.sqlite3")
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
    _common(serve)
    serve.set_defaults(func=cmd_serve)

    session = sub.add_parser("session", help="lecture sessions")
    ssub = session.add_subparsers(dest="session_command", required=True)
    create = ssub.add_parser("create", help="create a session with its 15 township rooms")
    create.add_argument("--title", required=True)
    create.add_argument("--video-codec", default="VP8", choices=["VP8", "H264", "vp8", "h264"])
    create.add_argument("--json", action="store_true", help="print JSON")
    _common(create)
    create.set_defaults(func=cmd_session_create)
    listing = ssub.add_parser("list", help="list sessions")
    _common(listing)
    listing.set_defaults(func=cmd_session_list)

    token = sub.add_parser("token", help="issue a signed token")
    token.add_argument("role", choices=["admin", "lecturer", "viewer", "room", "member"])
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
