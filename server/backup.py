"""``lecture-relay backup`` and ``restore``: the data directory copied while the relay serves,
and put back into an empty one.

Each database is copied with SQLite's online backup API (a consistent copy while the relay
writes; the copy of a WAL database is whole, with no -wal file beside it). The checkpoint log
is append-only: its copy ends at its last whole line. The manifest states each file's size
and SHA-256 and every session's ledger head, so a restored copy is checked against it.

What is not in a backup: the ledger signing key (it lives outside the data directory, and
whoever holds it can sign a forged record: keep it apart, docs/RUNBOOK.md), and recordings and
replays (large media files: copy the media directory with the file system's own tools)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

from server.config import Config
from server.files import PRIVATE, private_file
from server.refusals import Conflict, Invalid

MANIFEST = "manifest.json"
FORMAT = "lecture-relay backup v1"


def _databases(config: Config) -> dict[str, Path]:
    return {
        "relay.sqlite3": config.store_path,
        "ledger.sqlite3": config.ledger_path,
        "outbox.sqlite3": config.outbox_path,
    }


def _others(config: Config) -> dict[str, Path]:
    """Small files copied as they are: the token secret (links keep working after a restore)
    and the demo marker."""
    return {
        "secret.key": config.data_dir / "secret.key",
        "demo.json": config.data_dir / "demo.json",
    }


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def ledger_heads(path: Path) -> dict[str, list]:
    """Every session's newest ledger row: ``{session: [seq, hash]}``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        # SQLite gives a bare column from the row that holds the MAX()
        rows = db.execute(
            "SELECT session, MAX(seq), hash FROM events GROUP BY session ORDER BY session"
        ).fetchall()
    finally:
        db.close()
    return {session: [seq, digest] for session, seq, digest in rows}


def _copy_database(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    private_file(target)
    dst = sqlite3.connect(target)
    try:
        # in one step: a snapshot (in WAL mode the relay's writers go on meanwhile); in
        # steps, each write between two of them would start the copy over
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def _copy_log(source: Path, target: Path) -> None:
    data = source.read_bytes()
    private_file(target)
    target.write_bytes(data[: data.rfind(b"\n") + 1])  # a line being appended stays out


def _empty_or_absent(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise Conflict(f"{what} {path} is not empty: give a new or an empty directory")


def backup(config: Config, out: Path) -> dict:
    """Copy the data directory's records into ``out`` (new or empty); the manifest."""
    if not config.store_path.exists() and not config.ledger_path.exists():
        raise Invalid(f"no relay data in {config.data_dir}")
    _empty_or_absent(out, "the backup directory")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    files: dict[str, dict] = {}
    for name, path in _databases(config).items():
        if path.exists():
            _copy_database(path, out / name)
            files[name] = _digest(out / name)
    if config.checkpoint_log_path.exists():
        _copy_log(config.checkpoint_log_path, out / "checkpoints.jsonl")
        files["checkpoints.jsonl"] = _digest(out / "checkpoints.jsonl")
    for name, path in _others(config).items():
        if path.exists():
            private_file(out / name)
            shutil.copyfile(path, out / name)
            files[name] = _digest(out / name)
    manifest = {
        "format": FORMAT,
        "made_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "from": str(config.data_dir),
        "files": files,
        "ledger_heads": ledger_heads(out / "ledger.sqlite3") if "ledger.sqlite3" in files else {},
    }
    private_file(out / MANIFEST)
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return manifest


def read_manifest(source: Path) -> dict:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise Invalid(f"{source} holds no readable {MANIFEST}: not a backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Invalid(f"{source}/{MANIFEST} is not a {FORMAT} manifest")
    return manifest


def check(source: Path, manifest: dict) -> None:
    """Every file the manifest names is there with its size and hash."""
    for name, want in manifest["files"].items():
        path = source / name
        if Path(name).name != name or not path.is_file():
            raise Invalid(f"the backup lacks {name}")
        if _digest(path) != want:
            raise Invalid(f"{name} differs from the manifest: the backup is damaged")


def restore(source: Path, config: Config) -> dict:
    """Put a backup into the (new or empty) data directory; the manifest."""
    manifest = read_manifest(source)
    check(source, manifest)
    _empty_or_absent(config.data_dir, "the data directory")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    for name in manifest["files"]:
        target = config.data_dir / name
        private_file(target)
        shutil.copyfile(source / name, target)
        os.chmod(target, PRIVATE)
    if "ledger.sqlite3" in manifest["files"]:
        heads = ledger_heads(config.data_dir / "ledger.sqlite3")
        if heads != manifest["ledger_heads"]:
            raise Invalid("the restored ledger's heads differ from the manifest")
    return manifest
