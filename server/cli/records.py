"""Managing lectures and their records from the shell: sessions, tokens, keys, verify,
audit, roster, personal links, replays, the demo county."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from server.cli.common import (
    NOTHING_SIGNED,
    config_of,
    direct_ledger,
    emit,
    existing_ledger,
    signer_of,
    text_or_file,
)


def cmd_session_create(args: argparse.Namespace) -> int:
    from server.classrooms.directory import choose
    from server.lectures.links import session_links
    from server.lectures.service import DEFAULT_RULE, create_lecture, credit_rule
    from server.store import Store

    config = config_of(args)
    wanted = {"credit_threshold": args.credit_threshold, "replay_credit": not args.no_replay_credit}
    store = Store(config.store_path)
    try:
        rule = credit_rule(wanted)
        chosen = args.classrooms
        if chosen not in (None, "schools", "all"):
            chosen = [c.strip() for c in chosen.split(",") if c.strip()]
        rooms = choose(store, chosen, args.township)
        # the ledger (and the signing key) only for a rule to record: a new lecture with the
        # default one writes nothing there
        ledger = direct_ledger(config) if rule != DEFAULT_RULE else nullcontext(NOTHING_SIGNED)
        with ledger as record:
            made = create_lecture(
                store,
                record,
                args.title,
                "cli",
                video_codec=args.video_codec,
                recorded=not args.no_record,
                rule=rule,
                rooms=rooms,
            )
            session = asyncio.run(made)
    finally:
        store.close()
    links = session_links(config, signer_of(config), session)
    if args.json:
        print(json.dumps(links, ensure_ascii=False, indent=2))
    else:
        print(f"会话 {links['session_id']}: {links['title']}")
        print(f"  主讲页面 (lecturer): {links['urls']['lecturer']}")
        print(f"  手机观看 (watch):    {links['urls']['watch']}")
        print(f"  教室入口 (room):     {links['urls']['room_join']}")
        for room in links["rooms"]:
            place = (
                room["name"] if room["kind"] == "school" else f"{room['township']} {room['name']}"
            )
            print(f"    {place}: 教室码 {room['code']}")
    return 0


def cmd_session_list(args: argparse.Namespace) -> int:
    from server.store import Store

    store = Store(config_of(args).store_path)
    try:
        for s in store.list_sessions():
            print(f"{s.id}\t{s.status}\t{s.video_codec}\t{s.title}")
    finally:
        store.close()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    config = config_of(args)
    print(signer_of(config).issue(args.role, args.session, args.subject, args.ttl))
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    from server.attendance.signing import LedgerKey, public_key_text

    config = config_of(args)
    key = LedgerKey.load_or_create(config.ledger_key_path)
    print(f"public key:  {public_key_text(key.public)}")
    print(f"fingerprint: {key.fingerprint}")
    print(f"key file:    {config.ledger_key_path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from server.attendance.offline import verify_export_file
    from server.attendance.signing import (
        CheckpointLog,
        LedgerKey,
        checkpoint_from,
        parse_public_key,
    )
    from server.attendance.verify import verify

    config = config_of(args)
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
        public = parse_public_key(text_or_file(args.pubkey)) if args.pubkey else key.public
        receipt = None
        if args.receipt:
            receipt = checkpoint_from(json.loads(Path(args.receipt).read_text()))
        ledger = existing_ledger(config)
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


def cmd_audit(args: argparse.Namespace) -> int:
    from server.attendance.events import Export
    from server.attendance.exports import render_chunks
    from server.attendance.report_cache import report_for
    from server.attendance.signing import receipt
    from server.store import Store

    config = config_of(args)
    store = Store(config.store_path)
    try:
        with direct_ledger(config, must_exist=True) as record:
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
            emit(chunks, args.out, f"{len(report.participants)} participants")
    finally:
        store.close()
    return 0


def cmd_roster_import(args: argparse.Namespace) -> int:
    from server.roster import import_file

    return run_import(args, import_file)


def cmd_classrooms_import(args: argparse.Namespace) -> int:
    from server.classrooms.directory import import_file

    return run_import(args, import_file)


def cmd_classrooms_list(args: argparse.Namespace) -> int:
    from server.store import KINDS, Store

    store = Store(config_of(args).store_path)
    try:
        found = store.classrooms(township=args.township)
    finally:
        store.close()
    if args.json:
        rows = [{"id": c.id, "name": c.name, "kind": c.kind, "township": c.township,
                 "capacity": c.capacity} for c in found]  # fmt: skip
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for c in found:
            print(f"{c.id}\t{c.township}\t{KINDS.get(c.kind, c.kind)}\t{c.name}\t{c.capacity}")
    return 0


def run_import(args: argparse.Namespace, import_file) -> int:
    """Import ``args.file`` into the store with a progress bar and row errors on stderr."""
    from server.store import Store

    config = config_of(args)
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
    from server.lectures.links import member_links, to_csv_bytes, to_xlsx_bytes
    from server.store import Store

    config = config_of(args)
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
        rows = member_links(config, signer_of(config), session, members)
    finally:
        store.close()
    # names and tokens handed out: recorded in the session's ledger, as any export
    with direct_ledger(config) as record:
        record.append_signed_now(args.session, Export("cli", f"links-{args.format}", False))
    body = to_xlsx_bytes(rows) if args.format == "xlsx" else to_csv_bytes(rows)
    emit(body, args.out, f"{len(rows)} personal links")
    return 0


def cmd_replay_build(args: argparse.Namespace) -> int:
    from server.lectures.replays import run_job

    config = config_of(args)
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
    from server.lectures.replays import ReplayState, replay_paths

    state = ReplayState.load(replay_paths(config_of(args).media_root, args.session)[2])
    if state is None:
        print(f"no replay job for {args.session}")
        return 1
    print(json.dumps(state.__dict__, ensure_ascii=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from server.demo import print_links, seed

    config = config_of(args)
    print_links(seed(config), config.base_url)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Why phones cannot connect: each check OK, WARN or FAIL with its fix; exit 1 on a FAIL."""
    from server.doctor import diagnose, failed, lines

    findings = asyncio.run(diagnose(config_of(args)))
    if args.json:
        print(json.dumps([f.as_json() for f in findings], ensure_ascii=False, indent=2))
    else:
        print("\n".join(lines(findings)))
    return 1 if failed(findings) else 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the records while the relay serves (server/backup.py), with a manifest."""
    from server.backup import backup

    manifest = backup(config_of(args), Path(args.out))
    size = sum(f["bytes"] for f in manifest["files"].values())
    sessions = len(manifest["ledger_heads"])
    print(f"backed up {len(manifest['files'])} files, {size:,} bytes, {sessions} sessions' "
          f"ledgers to {args.out} (the ledger key is not in it)")  # fmt: skip
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a backup into an empty data directory; its ledger heads checked against it."""
    from server.backup import restore

    config = config_of(args)
    manifest = restore(Path(args.source), config)
    made, count = manifest["made_at"], len(manifest["files"])
    print(f"restored {count} files made {made} into {config.data_dir}; check a session's record")
    print("with: lecture-relay verify SESSION (the ledger key is the one kept apart)")
    return 0
