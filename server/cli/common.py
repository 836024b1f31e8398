"""What every command shares: the data option, the configuration, the signer, a command's
own hand on the ledger, and writing an export to a file or standard output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import Config, config_from_env, host_addresses
from server.files import private_file

if TYPE_CHECKING:
    from server.attendance.direct import DirectLedger


def data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="data directory (default ./data)")


def config_of(args: argparse.Namespace) -> Config:
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


def signer_of(config: Config):
    from server.auth import signer_for

    return signer_for(config.secret, config.data_dir)


class _NothingSigned:
    """The record of a command that has nothing to sign."""

    async def append_signed(self, session: str, event) -> None:
        raise RuntimeError(f"{event!r} was to be signed without a ledger")


NOTHING_SIGNED = _NothingSigned()


@contextmanager
def direct_ledger(config: Config, must_exist: bool = False) -> Iterator[DirectLedger]:
    """The ledger file with the signing key, for a command that appends (and signs) itself;
    ``must_exist``: a command that reads a record refuses to make an empty ledger."""
    from server.attendance.direct import DirectLedger
    from server.attendance.ledger import Ledger
    from server.attendance.signing import CheckpointLog, LedgerKey

    ledger = existing_ledger(config) if must_exist else Ledger(config.ledger_path)
    try:
        key = LedgerKey.load_or_create(config.ledger_key_path)
        yield DirectLedger(ledger, key, CheckpointLog(config.checkpoint_log_path))
    finally:
        ledger.close()


def existing_ledger(config: Config):
    from server.attendance.ledger import Ledger

    path = config.ledger_path
    if not path.exists():
        raise SystemExit(f"lecture-relay: no ledger at {path}")
    return Ledger(path)


def text_or_file(value: str) -> str:
    path = Path(value)
    return path.read_text() if path.is_file() else value


def emit(body: bytes | Iterable[bytes], out: str | None, what: str) -> None:
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
