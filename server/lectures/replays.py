"""The replay file of a session, made once after it ends: H.264 + AAC in MP4 with the index
first (faststart), so that every phone plays it (iOS Safari plays WebM VP8 only since 17.4).

H264 recordings are remuxed (video copied; the lecture's own keyframes remain the seek
points); VP8 recordings are transcoded with a keyframe every 2 s. Opus becomes AAC. It runs in
its own process under ``nice``, never in the forwarding loop; its state is a small JSON file
beside the output, so the server, the CLI and the admin page read the same progress.
"""

from __future__ import annotations

import fractions
import io
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av

KEYFRAME_INTERVAL_S = 2.0
MS = fractions.Fraction(1, 1000)
# An absolute path in an error (FFmpeg names the file it failed on): its last part is kept.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])*([^\s'\"/\\]*)")


@dataclass
class ReplayState:
    session: str
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    attempts: int = 0
    error: str = ""
    media_seconds: float = 0.0
    took_seconds: float = 0.0
    sources: list[str] | None = None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), ensure_ascii=False))
        os.replace(tmp, path)

    def public(self) -> dict:
        """What the API shows of the job: its progress and the replay's URLs, never a path
        on the server's disk (the recordings' names and an error's file names stay in the
        state file, for the CLI)."""
        out = asdict(self)
        out["recordings"] = len(out.pop("sources") or ())
        out["error"] = ABSOLUTE_PATH.sub(r"\1", self.error)
        if self.state == "done":
            out["url"] = f"/replays/{self.session}.mp4"
            out["poster"] = f"/replays/{self.session}.jpg"
        return out

    @classmethod
    def load(cls, path: Path) -> ReplayState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


# A session id as a file name: no separator, no dot, no glob character. The HTTP routes check
# the stricter store.SESSION_ID first; this is the last line before the disk.
FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _inside(folder: Path, session: str, *suffixes: str) -> list[Path]:
    """``folder/<session><suffix>`` for each suffix; ValueError unless ``session`` is a plain
    name and every path, resolved, stays in ``folder``."""
    if not FILE_ID.fullmatch(session):
        raise ValueError(f"not a session id: {session!r}")
    root = folder.resolve()
    paths = [folder / f"{session}{suffix}" for suffix in suffixes]
    for path in paths:
        if path.resolve().parent != root:
            raise ValueError(f"not a session id: {session!r}")
    return paths


def replay_paths(media_dir: Path, session: str) -> tuple[Path, Path, Path]:
    """(mp4, poster jpg, state json); ValueError for an id that is not a plain name."""
    mp4, jpg, state = _inside(media_dir / "replays", session, ".mp4", ".jpg", ".json")
    return mp4, jpg, state


def recordings_of(media_dir: Path, session: str) -> list[Path]:
    """A session's recordings in the order they were made (a server restart starts another)."""
    folder = media_dir / "recordings"
    _inside(folder, session)
    found = list(folder.glob(f"{session}-*.webm")) + list(folder.glob(f"{session}-*.mkv"))
    return sorted(found, key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def _duration(paths: list[Path]) -> float:
    total = 0.0
    for path in paths:
        with av.open(str(path)) as c:
            if c.duration:
                total += c.duration / 1_000_000
            else:  # a recording cut short by a crash has no duration in its header
                last = 0.0
                for packet in c.demux():
                    if packet.pts is not None:
                        last = max(last, float(packet.pts * packet.time_base))
                total += last
    return total


def build(
    sources: list[Path],
    out: Path,
    poster: Path,
    progress: Callable[[float], None] = lambda p: None,
) -> float:
    """Make the replay from the recordings; returns its media length in seconds."""
    total = max(_duration(sources), 0.001)
    tmp = out.with_name(out.stem + ".part.mp4")
    output = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    vout = aout = None
    copy_video = False
    offset = 0.0  # where the current source starts in the replay
    poster_done = False
    last_report = 0.0
    for path in sources:
        with av.open(str(path)) as src:
            vin = src.streams.video[0] if src.streams.video else None
            ain = src.streams.audio[0] if src.streams.audio else None
            if vin is not None and vout is None:
                copy_video = vin.codec_context.name == "h264"
                if copy_video:
                    # MP4 needs the SPS/PPS as the stream's extradata; FFmpeg's raw H264
                    # demuxer finds them in the first key frame and we copy its parameters.
                    vout = output.add_stream_from_template(_h264_template(src, vin))
                else:
                    vout = output.add_stream("libx264", rate=30)
                    vout.width, vout.height = vin.width or 640, vin.height or 360
                    vout.pix_fmt = "yuv420p"
                    vout.codec_context.options = {
                        "preset": "veryfast",
                        "crf": "23",
                        "x264-params": f"keyint={int(30 * KEYFRAME_INTERVAL_S)}:min-keyint=1",
                    }
                    vout.codec_context.time_base = MS
            if ain is not None and aout is None:
                aout = output.add_stream("aac", rate=48000)
                aout.codec_context.layout = "stereo"
                aout.codec_context.time_base = fractions.Fraction(1, 48000)
            resampler = av.AudioResampler(
                format="fltp", layout="stereo", rate=48000, frame_size=1024
            )
            end = offset
            streams = [s for s in (vin, ain) if s is not None]
            for packet in src.demux(*streams):
                if packet.pts is None or packet.size == 0:
                    continue
                at = offset + float(packet.pts * packet.time_base)
                end = max(end, at)
                if packet.stream is vin:
                    if copy_video:
                        data = to_annexb(bytes(packet))
                        out_packet = av.Packet(data)
                        out_packet.stream = vout
                        out_packet.pts = out_packet.dts = round(at * 1000)
                        out_packet.time_base = MS
                        out_packet.is_keyframe = packet.is_keyframe
                        output.mux(out_packet)
                        if not poster_done and packet.is_keyframe:
                            poster_done = _poster(data, "h264", poster)
                    else:
                        for frame in packet.decode():
                            if not poster_done:
                                poster_done = save_jpeg(frame, poster)
                            frame.pts = round(at * 1000)
                            frame.time_base = MS
                            output.mux(vout.encode(frame.reformat(format="yuv420p")))
                else:
                    for frame in packet.decode():
                        frame.pts = round(at * 48000)
                        frame.time_base = fractions.Fraction(1, 48000)
                        for rs in resampler.resample(frame):
                            output.mux(aout.encode(rs))
                if at - last_report >= 1.0:
                    last_report = at
                    progress(min(at / total, 0.99))
            offset = end + 0.04
    if vout is not None and not copy_video:
        output.mux(vout.encode(None))
    if aout is not None:
        output.mux(aout.encode(None))
    output.close()
    os.replace(tmp, out)
    progress(1.0)
    return total


def to_annexb(data: bytes) -> bytes:
    """H264 access unit as Annex B (start codes); Matroska stores length-prefixed NAL units."""
    if data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01"):
        return data
    out = []
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(b"\x00\x00\x00\x01" + data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return b"".join(out)


def _h264_template(src, vin) -> av.video.stream.VideoStream:
    """An H264 stream whose parameters (with SPS/PPS) come from the recording's first key
    frame, parsed by FFmpeg's raw H264 demuxer."""
    data = b""
    for packet in src.demux(vin):
        if packet.size and (data or packet.is_keyframe):
            data += to_annexb(bytes(packet))
            if len(data) > 64 * 1024 or data.count(b"\x00\x00\x01") > 8:
                break
    src.seek(0)
    if not data:
        raise ValueError("the recording has no H264 key frame")
    raw = av.open(io.BytesIO(data), format="h264")
    return raw.streams.video[0]


def _poster(keyframe: bytes, codec: str, poster: Path) -> bool:
    try:
        decoder = av.CodecContext.create(codec, "r")
        for frame in decoder.decode(av.Packet(keyframe)):
            return save_jpeg(frame, poster)
    except (av.FFmpegError, OSError):
        pass
    return False


def save_jpeg(frame: av.VideoFrame, path: Path) -> bool:
    """One frame as a JPEG, with FFmpeg's own encoder (no imaging library needed)."""
    try:
        enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height = frame.width, frame.height
        enc.pix_fmt = "yuvj420p"
        enc.time_base = fractions.Fraction(1, 25)
        image = frame.reformat(format="yuvj420p")
        image.pts = 0
        data = b"".join(bytes(p) for p in enc.encode(image)) + b"".join(
            bytes(p) for p in enc.encode(None)
        )
        path.write_bytes(data)
        return bool(data)
    except (av.FFmpegError, OSError):
        return False


def run_job(media_dir: Path, session: str, attempts: int = 3) -> ReplayState:
    """Build with retries; the state file says how it goes. The recordings are never touched."""
    mp4, poster, state_path = replay_paths(media_dir, session)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    state = ReplayState.load(state_path) or ReplayState(session)
    sources = recordings_of(media_dir, session)
    state.sources = [p.name for p in sources]
    if not sources:
        state.state, state.error = "failed", "no recording of this session"
        state.save(state_path)
        return state
    while state.attempts < attempts:
        state.attempts += 1
        state.state, state.error, state.progress = "running", "", 0.0
        state.save(state_path)
        started = time.monotonic()

        def report(p: float) -> None:
            state.progress = round(p, 3)
            state.save(state_path)

        try:
            state.media_seconds = round(build(sources, mp4, poster, report), 2)
        except Exception as exc:  # noqa: BLE001 - recorded, retried, reported
            state.state, state.error = "failed", f"{type(exc).__name__}: {exc}"
            state.save(state_path)
            continue
        state.state, state.took_seconds = "done", round(time.monotonic() - started, 2)
        state.save(state_path)
        return state
    return state


class ReplayJobs:
    """Runs replay builds in their own process under ``nice``, one at a time, and owns them."""

    def __init__(self, media_dir: Path, python: str, niceness: int = 10) -> None:
        self.media_dir = media_dir
        self._python = python
        self._niceness = niceness
        self._queue: list[str] = []
        self._task = None
        self._wake = None

    def state(self, session: str) -> ReplayState | None:
        return ReplayState.load(replay_paths(self.media_dir, session)[2])

    def schedule(self, session: str) -> ReplayState:
        import asyncio

        _, _, state_path = replay_paths(self.media_dir, session)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = ReplayState(session)
        state.save(state_path)
        if session not in self._queue:
            self._queue.append(session)
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return state

    async def _run(self) -> None:
        import asyncio

        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                session = self._queue.pop(0)
                proc = await asyncio.create_subprocess_exec(
                    "nice",
                    "-n",
                    str(self._niceness),
                    self._python,
                    "-m",
                    "server",
                    "replay",
                    "build",
                    session,
                    "--media",
                    str(self.media_dir),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                try:
                    await proc.wait()
                except asyncio.CancelledError:
                    proc.kill()
                    await proc.wait()
                    raise

    async def close(self) -> None:
        import asyncio

        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
