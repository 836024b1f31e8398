"""Files that hold people's data (names, phones, tokens, attendance) or the server's secrets:
only their owner may read them."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600
# SQLite's files beside a database; it gives the ones it makes the database's own mode.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def private_file(path: Path) -> Path:
    """``path``, created empty with mode 0600 where it is not there yet, or tightened to 0600
    (with its SQLite sidecars) where an older install left it readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
    except FileExistsError:
        for each in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDECARS)):
            try:
                if each.stat().st_mode & 0o077:
                    os.chmod(each, PRIVATE)
            except FileNotFoundError:
                pass
    return path


def refuse_shared(path: Path) -> None:
    """A secret that others may read is refused (PermissionError, naming the file): it may
    have been read already, and the server should not go on signing with it unnoticed."""
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others: chmod 600 {path}")
