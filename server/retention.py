"""Disk used by recordings and replays, and the retention policy that frees it."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from server.lectures.replays import ReplayState, replay_paths


@dataclass
class Usage:
    recordings_bytes: int
    replays_bytes: int
    recordings: int
    replays: int
    free_bytes: int

    def as_json(self) -> dict:
        return self.__dict__.copy()


def _files(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.glob(pattern) if p.is_file()] if folder.exists() else []


def usage(media_dir: Path) -> Usage:
    recs = _files(media_dir / "recordings", "*")
    reps = _files(media_dir / "replays", "*.mp4")
    free = shutil.disk_usage(media_dir if media_dir.exists() else Path(".")).free
    rep_bytes = sum(p.stat().st_size for p in _files(media_dir / "replays", "*"))
    return Usage(sum(p.stat().st_size for p in recs), rep_bytes, len(recs), len(reps), free)


def recording_bytes(media_dir: Path, session: str) -> int:
    return sum(p.stat().st_size for p in _files(media_dir / "recordings", f"{session}-*"))


def sweep(
    media_dir: Path,
    recording_days: float,
    replay_days: float,
    now: float | None = None,
) -> list[Path]:
    """Delete what the policy no longer keeps; returns what was deleted.

    A recording goes only once its replay is made (the replay is then the session's copy);
    a replay goes with its poster and state file. 0 days keeps forever.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    if recording_days > 0:
        for path in _files(media_dir / "recordings", "*"):
            session = path.stem.rsplit("-", 1)[0]
            try:
                state = ReplayState.load(replay_paths(media_dir, session)[2])
            except ValueError:  # not named after a session: not the policy's to delete
                continue
            if state is None or state.state != "done":
                continue
            if now - path.stat().st_mtime > recording_days * 86400:
                path.unlink()
                removed.append(path)
    if replay_days > 0:
        for mp4 in _files(media_dir / "replays", "*.mp4"):
            if now - mp4.stat().st_mtime > replay_days * 86400:
                try:
                    paths: tuple[Path, ...] = replay_paths(media_dir, mp4.stem)
                except ValueError:  # a build's leftover (<session>.part.mp4): itself alone
                    paths = (mp4,)
                for path in paths:
                    if path.exists():
                        path.unlink()
                        removed.append(path)
    return removed
