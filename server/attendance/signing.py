"""Signed chain heads: the server's Ed25519 key, checkpoints, receipts.

A hash chain alone can be recomputed by whoever can write the database file; a signature over
the head cannot, without the key, which lives outside the data directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.files import PRIVATE, private_file, refuse_shared

DOMAIN = b"lecture-relay/checkpoint/v1"


@dataclass(frozen=True)
class Checkpoint:
    session: str
    seq: int
    head: str
    at_ms: int
    final: bool
    key_fp: str
    signature: str  # base64

    def message(self) -> bytes:
        return signed_message(self.session, self.seq, self.head, self.at_ms, self.final)

    def as_json(self) -> dict:
        return asdict(self)


def signed_message(session: str, seq: int, head: str, at_ms: int, final: bool) -> bytes:
    return b"\n".join(
        [
            DOMAIN,
            session.encode(),
            str(seq).encode(),
            head.encode(),
            str(at_ms).encode(),
            b"final" if final else b"checkpoint",
        ]
    )


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    digest = hashlib.sha256(public_key_bytes(key)).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as one line: ``ed25519:<base64 of the 32 raw bytes>``."""
    return "ed25519:" + base64.b64encode(public_key_bytes(key)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = base64.b64decode(text.removeprefix("ed25519:"), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


class LedgerKey:
    """The server's signing key, created on first start with mode 0600."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.fingerprint = fingerprint(self.public)

    @classmethod
    def load_or_create(cls, path: Path) -> LedgerKey:
        if path.exists():
            refuse_shared(path)
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 private key")
            return cls(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key)

    def sign(self, session: str, seq: int, head: str, at_ms: int, final: bool) -> Checkpoint:
        signature = self._private.sign(signed_message(session, seq, head, at_ms, final))
        return Checkpoint(
            session, seq, head, at_ms, final, self.fingerprint, base64.b64encode(signature).decode()
        )


class _Heads(Protocol):
    def head(self, session: str) -> tuple[int, str]: ...


def sign_head(
    key: LedgerKey,
    ledger: _Heads,
    session: str,
    at_ms: int,
    final: bool = False,
    signed: int | None = None,
) -> Checkpoint | None:
    """The checkpoint of ``session``'s newest event, made at ``at_ms``: the one way the
    tracker (each tick, at the end) and a command writing the ledger itself
    (server/attendance/direct.py) sign. None while the session has no event, or when its
    head is ``signed`` already (a final checkpoint is made whatever was signed before)."""
    seq, head = ledger.head(session)
    if seq == 0 or (not final and seq == signed):
        return None
    return key.sign(session, seq, head, at_ms, final)


def signature_valid(cp: Checkpoint, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(base64.b64decode(cp.signature), cp.message())
        return True
    except (InvalidSignature, ValueError):
        return False


class CheckpointLog:
    """Every signed checkpoint, appended to a file of its own (one JSON line each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            private_file(path)  # who attended when, from an install that made it 0644

    def append(self, cp: Checkpoint) -> None:
        line = json.dumps(cp.as_json(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, session: str) -> list[Checkpoint]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                data = json.loads(line)
                cp = Checkpoint(**data)
            except (ValueError, TypeError):
                continue
            if cp.session == session:
                out.append(cp)
        return out


def receipt(cp: Checkpoint, key: Ed25519PublicKey) -> dict:
    """What the admin keeps outside the server: enough to catch a full rewrite later."""
    return {
        "receipt": "lecture-relay attendance v1",
        **cp.as_json(),
        "public_key": public_key_text(key),
    }


def checkpoint_from(data: dict) -> Checkpoint:
    fields = ("session", "seq", "head", "at_ms", "final", "key_fp", "signature")
    try:
        return Checkpoint(**{k: data[k] for k in fields})
    except KeyError as exc:
        raise ValueError(f"receipt lacks {exc.args[0]}") from None
