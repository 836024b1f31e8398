"""Which fan-out path this process forwards on: the native loop (media/_fanout.c: header
rewrite, libsrtp2 protect and sendmmsg for every viewer of a packet in one call) when it was
built and not turned off (``LR_FASTPATH=python``), else the Python loop in forwarder.py.
Chosen once at start; the two send the same bytes (tests/test_native.py)."""

from __future__ import annotations

try:
    from media import _fanout
except ImportError:  # not built here (no compiler or libsrtp2 headers at install)
    _fanout = None

BUILT = _fanout is not None
_enabled = BUILT


def use(wanted: str) -> str:
    """Choose the path: "native" (when built) or "python"; returns the one in use."""
    global _enabled
    if wanted not in ("native", "python"):
        raise ValueError(f"unknown fast path {wanted!r} (native or python)")
    _enabled = BUILT and wanted == "native"
    return path()


def path() -> str:
    return "native" if _enabled else "python"


def enabled() -> bool:
    return _enabled


def srtp(key: bytes, profile: int):
    """An outbound SRTP context of the native loop (``key``: master key and salt)."""
    return _fanout.Srtp(key, profile)


def track(srtp_context, fd: int, addr: tuple):
    return _fanout.Track(srtp_context, fd, addr[0], addr[1])


fanout = _fanout.fanout if BUILT else None
