"""A lean server-side WebSocket for small text messages, each handed to a plain callback.

The pages' heartbeat sockets: thousands of them, each with a message every few seconds.
aiohttp's ``WebSocketResponse`` hands every message to the handler's coroutine through a
queue, and per message that made a future, a task step and a suspended frame or two, which
at ~5,500 heartbeats a second were a good part of the event loop's time and most of what
its cycle collector walked (docs/DECISIONS.md). Here aiohttp still parses the request and
writes the ``101`` answer; the frames after it come to ``feed_data`` through the hook
aiohttp's own WebSocket uses (``RequestHandler.set_parser``), are parsed there (RFC 6455,
no extensions) and each whole message goes to ``on_message`` at once. Answers go out with
``send_text`` in whatever order the caller chooses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable

from aiohttp import web

from server.web.errors import HTTPProblem

log = logging.getLogger(__name__)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_TIMEOUT_S = 2.0  # how long a socket we close waits for the page's own close frame

# close codes (RFC 6455, 7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED, BAD_DATA, TOO_BIG = (
    1000,
    1001,
    1002,
    1003,
    1007,
    1009,
)
INTERNAL_ERROR = 1011
POLICY_VIOLATION = 1008


class FrameError(Exception):
    """A frame that ends the socket with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    """A client frame's payload, unmasked (one XOR over the whole of it as an integer)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


class LeanSocket:
    """One accepted socket. ``on_message(socket, text)`` gets each text message's bytes
    (a binary message ends the socket with 1003). Between ``hold()`` and ``release()`` no
    message is handed on: what comes meanwhile waits in the buffer, and past one message's
    worth in the kernel's (reading stops), so a page cannot queue work faster than it is
    answered. Holding costs nothing when nothing comes, as with a page waiting for its answer."""

    def __init__(
        self,
        transport: asyncio.Transport,
        on_message: Callable[[LeanSocket, bytes], None],
        max_message: int,
    ) -> None:
        self.transport = transport
        self.on_message = on_message
        self.max_message = max_message
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.response: web.StreamResponse | None = None  # the 101 (``accept`` sets it)
        self.close_code: int | None = None  # the code we sent, once we have
        self._buffer = bytearray()
        self._fragments: bytearray | None = None
        self._holds = 0
        self._paused = False  # reading stopped: held with a full buffer

    # -- aiohttp's payload-parser interface ----------------------------------------------
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._buffer += data
        self._parse()
        if self._holds and not self._paused and len(self._buffer) > self.max_message:
            # held, and the page keeps sending: the kernel's buffers hold the rest
            self._paused = True
            self.transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._finish(1006)

    # -- the caller's side ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.close_code is not None or self.done.done()

    async def wait(self) -> int:
        """Until the socket ends; its close code (1006: the connection was lost). A handler
        cancelled meanwhile (aiohttp may cancel it when the connection goes) leaves ``done``
        to tell how it ended."""
        return await asyncio.shield(self.done)

    def send_text(self, text: bytes) -> None:
        if not self.closed and not self.transport.is_closing():
            self.transport.write(server_frame(0x1, text))

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close frame; the socket ends when the page answers it (or soon after)."""
        if self.closed:
            return
        self.close_code = code
        if not self.transport.is_closing():
            # a control frame carries at most 125 bytes: the code and 123 of the reason
            said = reason.encode()[:123].decode(errors="ignore").encode()
            self.transport.write(server_frame(0x8, code.to_bytes(2, "big") + said))
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._finish, code)

    def hold(self) -> None:
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            if self._paused:
                self._paused = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()
            self._parse()  # what came meanwhile waited in the buffer

    # -- frames --------------------------------------------------------------------------
    def _finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    def _parse(self) -> None:
        try:
            while self._holds == 0 and not self.done.done() and self._frame():
                pass
        except FrameError as exc:
            self._end(exc.code, exc.reason)
        except Exception:  # noqa: BLE001 - a fault of ours ends this socket, not the connection's protocol
            log.exception("a WebSocket message could not be handled")
            self._end(INTERNAL_ERROR, "internal error")

    def _end(self, code: int, reason: str) -> None:
        self._buffer.clear()
        if self.close_code is None:
            self.close(code, reason)
        self._finish(code)

    def _frame(self) -> bool:
        """Take one whole frame off the buffer and act on it; False when there is none."""
        buf = self._buffer
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "no extension was agreed")
        if not second & 0x80:
            raise FrameError(PROTOCOL_ERROR, "a client's frames must be masked")
        length, at = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return False
            length, at = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return False
            length, at = int.from_bytes(buf[2:10], "big"), 10
        so_far = len(self._fragments) if self._fragments is not None else 0
        if so_far + length > self.max_message:
            raise FrameError(TOO_BIG, "message too big")
        end = at + 4 + length
        if len(buf) < end:
            return False
        payload = unmask(buf[at + 4 : end], bytes(buf[at : at + 4]))
        del buf[:end]
        self._act(first & 0x0F, bool(first & 0x80), payload)
        return True

    def _act(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode >= 0x8:  # control frames: whole, short, maybe between fragments
            if not fin or len(payload) > 125:
                raise FrameError(PROTOCOL_ERROR, "a control frame must be whole and short")
            if opcode == 0x8:
                if len(payload) == 1:
                    raise FrameError(PROTOCOL_ERROR, "a close frame's code is two bytes")
                code = int.from_bytes(payload[:2], "big") if payload else NORMAL
                if self.close_code is None:
                    self.close_code = code
                    self.transport.write(server_frame(0x8, code.to_bytes(2, "big")))
                self._finish(code)
            elif opcode == 0x9:
                self.transport.write(server_frame(0xA, payload))
            elif opcode != 0xA:
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        if opcode == 0x0:
            if self._fragments is None:
                raise FrameError(PROTOCOL_ERROR, "a continuation without a message")
            self._fragments += payload
            if not fin:
                return
            payload, self._fragments = bytes(self._fragments), None
        elif opcode in (0x1, 0x2):
            if self._fragments is not None:
                raise FrameError(PROTOCOL_ERROR, "a new message inside a fragmented one")
            if opcode == 0x2:
                raise FrameError(UNSUPPORTED, "text messages only")
            if not fin:
                self._fragments = bytearray(payload)
                return
        else:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise FrameError(BAD_DATA, "a text message must be UTF-8") from None
        if self.close_code is None:  # once we have said close, only the page's close counts
            self.on_message(self, payload)


async def accept(
    request: web.Request,
    on_message: Callable[[LeanSocket, bytes], None],
    max_message: int,
) -> LeanSocket:
    """Answer a WebSocket handshake (version 13, no extensions or subprotocols) and hand
    the connection's frames to a new ``LeanSocket``. The handler then awaits its ``wait()``
    and returns ``socket.response``; a bad handshake is a 400."""
    headers = request.headers
    if headers.get("Upgrade", "").lower() != "websocket":
        raise HTTPProblem(400, "this is a WebSocket: Upgrade: websocket expected")
    if "upgrade" not in headers.get("Connection", "").lower():
        raise HTTPProblem(400, "this is a WebSocket: Connection: upgrade expected")
    if headers.get("Sec-WebSocket-Version") != "13":
        raise HTTPProblem(400, "WebSocket version 13 only")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        ok = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        ok = False
    if not ok:
        raise HTTPProblem(400, "a bad Sec-WebSocket-Key")
    transport = request.transport
    if transport is None:
        raise HTTPProblem(400, "the connection is gone")
    response = web.StreamResponse(
        status=101,
        headers={
            "Upgrade": "websocket",
            "Connection": "upgrade",
            "Sec-WebSocket-Accept": accept_key(key),
        },
    )
    response.force_close()
    await response.prepare(request)
    socket = LeanSocket(transport, on_message, max_message)
    socket.response = response
    request.protocol.set_parser(socket)
    request.protocol.keep_alive(False)
    return socket
