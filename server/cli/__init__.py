"""``lecture-relay``: serve, and manage sessions and tokens from the shell. The parser is
here; the commands are in serve.py (running the relay) and records.py (everything else)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.common import data_option
from server.cli.records import (
    cmd_audit,
    cmd_backup,
    cmd_classrooms_import,
    cmd_classrooms_list,
    cmd_demo,
    cmd_doctor,
    cmd_keys_show,
    cmd_links,
    cmd_replay_build,
    cmd_replay_status,
    cmd_restore,
    cmd_roster_import,
    cmd_session_create,
    cmd_session_list,
    cmd_token,
    cmd_verify,
)
from server.cli.serve import cmd_ledger_writer, cmd_serve, cmd_worker
from server.config import DEFAULT_THRESHOLD, ConfigError
from server.refusals import Refused
from server.schema import SchemaTooNew


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
    data_option(serve)
    serve.set_defaults(func=cmd_serve)

    writer = sub.add_parser(
        "ledger-writer", help="cluster mode: write the Redis attendance stream into the ledger"
    )
    data_option(writer)
    writer.set_defaults(func=cmd_ledger_writer)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--primary", required=True)
    worker.set_defaults(func=cmd_worker)

    session = sub.add_parser("session", help="lecture sessions")
    ssub = session.add_subparsers(dest="session_command", required=True)
    create = ssub.add_parser("create", help="create a session with a room per classroom")
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
    create.add_argument(
        "--classrooms",
        help='"schools" (default: the 15 township schools), "all", or ids, comma-separated',
    )
    create.add_argument(
        "--township",
        action="append",
        help="every classroom of this township (repeat for more); instead of --classrooms",
    )
    data_option(create)
    create.set_defaults(func=cmd_session_create)
    listing = ssub.add_parser("list", help="list sessions")
    data_option(listing)
    listing.set_defaults(func=cmd_session_list)

    demo = sub.add_parser("demo", help="create the demo county once and print its links")
    data_option(demo)
    demo.set_defaults(func=cmd_demo)

    roster = sub.add_parser("roster", help="the member roster")
    rsub = roster.add_subparsers(dest="roster_command", required=True)
    import_parser(rsub, "members", 30000, cmd_roster_import)

    rooms = sub.add_parser("classrooms", help="the classroom directory (教室)")
    csub = rooms.add_subparsers(dest="classrooms_command", required=True)
    import_parser(csub, "classrooms", 330, cmd_classrooms_import)
    clist = csub.add_parser("list", help="list the directory")
    clist.add_argument("--township", help="only this township's classrooms")
    clist.add_argument("--json", action="store_true", help="print JSON")
    data_option(clist)
    clist.set_defaults(func=cmd_classrooms_list)

    links = sub.add_parser("links", help="personal join links for the roster's members")
    links.add_argument("session")
    links.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    links.add_argument("--township", help="only this township's members")
    links.add_argument("--out")
    data_option(links)
    links.set_defaults(func=cmd_links)

    replay = sub.add_parser("replay", help="the replay file of an ended session")
    rpsub = replay.add_subparsers(dest="replay_command", required=True)
    rb = rpsub.add_parser("build", help="make the H.264 + AAC MP4 (normally run by the server)")
    rb.add_argument("session")
    rb.add_argument("--media", type=Path, help="recordings and replays directory")
    data_option(rb)
    rb.set_defaults(func=cmd_replay_build)
    rs = rpsub.add_parser("status", help="the replay job's state")
    rs.add_argument("session")
    data_option(rs)
    rs.set_defaults(func=cmd_replay_status)

    keys = sub.add_parser("keys", help="the ledger signing key")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    show = ksub.add_parser("show", help="print the public key and its fingerprint")
    data_option(show)
    show.set_defaults(func=cmd_keys_show)

    ver = sub.add_parser("verify", help="verify a session's attendance record")
    ver.add_argument("session", nargs="?")
    ver.add_argument("--receipt", help="a receipt file kept outside the server")
    ver.add_argument("--export", help="verify an exported JSON file offline")
    ver.add_argument("--pubkey", help="the server's public key (text or file)")
    data_option(ver)
    ver.set_defaults(func=cmd_verify)

    audit = sub.add_parser("audit", help="export a session's attendance")
    audit.add_argument("session")
    audit.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
    audit.add_argument("--out", help="file to write (default: standard output)")
    audit.add_argument("--phones", action="store_true", help="include phone numbers unmasked")
    data_option(audit)
    audit.set_defaults(func=cmd_audit)

    back = sub.add_parser("backup", help="copy the records while serving, with a manifest")
    back.add_argument("--out", required=True, help="a new or empty directory")
    data_option(back)
    back.set_defaults(func=cmd_backup)
    rest = sub.add_parser("restore", help="put a backup into an empty data directory")
    rest.add_argument("source", help="a directory made by lecture-relay backup")
    data_option(rest)
    rest.set_defaults(func=cmd_restore)

    doctor = sub.add_parser("doctor", help="check what phones and lecturers need to connect")
    doctor.add_argument("--json", action="store_true", help="print JSON (for monitoring)")
    data_option(doctor)
    doctor.set_defaults(func=cmd_doctor)

    token = sub.add_parser("token", help="issue a signed token")
    token.add_argument("role", choices=["admin", "school", "lecturer", "viewer", "room", "member"])
    token.add_argument("--session")
    token.add_argument("--subject")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default one day)")
    data_option(token)
    token.set_defaults(func=cmd_token)
    return parser


def import_parser(sub, what: str, expect: int, func) -> None:
    """``import FILE`` of a table (the roster, the classroom directory)."""
    imp = sub.add_parser("import", help=f"import {what} from CSV or XLSX")
    imp.add_argument("file")
    imp.add_argument("--expect", type=int, default=expect, help="rows expected (progress bar)")
    imp.add_argument("--max-errors", type=int, default=50, help="errors to print")
    data_option(imp)
    imp.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, SchemaTooNew) as exc:  # a bad LR_* value, a newer file: no traceback
        print(f"lecture-relay: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:  # what a service refused (server/refusals.py), for every command
        print(f"lecture-relay: {exc.reason}", file=sys.stderr)
        return 2
