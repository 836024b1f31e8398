"""Packet cache: the last N forwarded packets of one track, by relay sequence number,
so NACKs from viewers are answered without asking the publisher."""

from __future__ import annotations


class PacketCache:
    __slots__ = ("_mask", "_slots")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._slots: list[tuple | None] = [None] * size

    def put(self, rseq: int, marker: int, rts: int, payload: bytes) -> None:
        self._slots[rseq & self._mask] = (rseq, marker, rts, payload)

    def get(self, rseq: int) -> tuple[int, int, int, bytes] | None:
        entry = self._slots[rseq & self._mask]
        if entry is not None and entry[0] == rseq:
            return entry
        return None
