"""The lean WebSocket the heartbeat sockets use: the handshake, frames as RFC 6455 has them
(fragments, control frames between them, masking, limits, the close handshake) and holding,
against a raw client on 127.0.0.1 that writes exactly the bytes under test."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.web.errors import error_middleware
from server.web.lean_socket import LeanSocket, accept, accept_key, unmask

MAX = 64
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def test_the_accept_key_is_rfc_6455s_example():
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_unmasking_undoes_masking_at_any_length():
    mask = os.urandom(4)
    for n in (0, 1, 3, 4, 5, 125, 126, 4099):
        data = os.urandom(n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert unmask(masked, mask) == data


@asynccontextmanager
async def echo_server():
    """Echoes each message upper-cased; ``hold`` holds the socket until the test releases
    it (``held`` receives the socket); ``close`` closes it from the server's side, ``fail``
    raises in the handler."""
    held: asyncio.Queue[LeanSocket] = asyncio.Queue()
    ended: asyncio.Queue[int] = asyncio.Queue()
    seen: list[bytes] = []

    def on_message(sock: LeanSocket, text: bytes) -> None:
        seen.append(text)
        if text == b"hold":
            sock.hold()
            held.put_nowait(sock)
        elif text == b"close":
            sock.close(4000, "asked to")
        elif text == b"close at length":
            sock.close(4000, "a" + "原因" * 100)  # 601 bytes of reason
        elif text == b"fail":
            raise RuntimeError("a fault in the handler")
        else:
            sock.send_text(text.upper())

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = await accept(request, on_message, MAX)
        try:
            await sock.wait()
        finally:  # (aiohttp may cancel the handler when the connection is lost)
            ended.put_nowait(sock.done.result() if sock.done.done() else None)
        return sock.response

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/ws", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield SimpleNamespace(port=server.port, held=held, ended=ended, seen=seen)
    finally:
        await server.close()


class RawClient:
    """A client that writes the frames it is given, masked or not, whole or in pieces."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, headers: str | None = None) -> tuple[RawClient, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        headers = headers or (
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        )
        writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer), head

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
        n = len(payload)
        size = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
        first = bytes([(0x80 if fin else 0) | opcode])
        if not masked:
            return first + size + payload
        mask = os.urandom(4)
        size = bytes([0x80 | size[0]]) + size[1:]
        return first + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    async def receive(self) -> tuple[int, bytes]:
        """The server's next frame: (opcode, payload); the server never masks."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        assert second & 0x80 == 0, "a server's frames are not masked"
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), 5)

    async def receive_close(self) -> int:
        opcode, payload = await self.receive()
        assert opcode == 0x8
        return int.from_bytes(payload[:2], "big")

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


async def test_an_aiohttp_client_talks_to_it_and_closes_cleanly():
    async with echo_server() as echo:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://127.0.0.1:{echo.port}/ws") as ws:
                for word in ("hello", "心跳"):
                    await ws.send_str(word)
                    assert await ws.receive_str() == word.upper()
                await ws.close()
                assert ws.close_code == 1000
        assert await asyncio.wait_for(echo.ended.get(), 5) == 1000


async def test_a_bad_handshake_is_a_400_with_a_reason():
    async with echo_server() as echo:
        client, head = await RawClient.connect(
            echo.port,
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n",
        )
        assert head.startswith(b"HTTP/1.1 400")
        client.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{echo.port}/ws") as resp:
                assert resp.status == 400 and "Upgrade" in (await resp.json())["error"]
        assert echo.ended.empty()


async def test_fragments_make_one_message_and_pings_between_them_are_answered():
    async with echo_server() as echo:
        client, head = await RawClient.connect(echo.port)
        assert head.startswith(b"HTTP/1.1 101")
        accept_line = f"Sec-WebSocket-Accept: {accept_key(KEY)}".encode()
        assert accept_line in head
        client.send(
            client.frame(0x1, b"frag", fin=False),
            client.frame(0x9, b"are you there"),
            client.frame(0x0, b"men", fin=False),
        )
        assert await client.receive() == (0xA, b"are you there")
        # the last fragment in two writes, split inside its header
        last = client.frame(0x0, b"ts")
        client.send(last[:3])
        await asyncio.sleep(0)  # let the partial write be read on its own (no wait on it)
        client.send(last[3:])
        assert await client.receive() == (0x1, b"FRAGMENTS")
        client.close()


async def test_frames_a_client_must_not_send_end_the_socket_with_their_code():
    cases = [
        (RawClient.frame(0x2, b"\x00\x01"), 1003),  # binary
        (RawClient.frame(0x1, b"plain", masked=False), 1002),  # unmasked
        (RawClient.frame(0x1, b"x" * (MAX + 1)), 1009),  # too big
        (RawClient.frame(0x0, b"orphan"), 1002),  # continuation without a start
        (RawClient.frame(0x3, b""), 1002),  # reserved opcode
        (RawClient.frame(0x9, b"p", fin=False), 1002),  # fragmented control frame
        (RawClient.frame(0x8, b"\x03"), 1002),  # a close code of one byte
        (RawClient.frame(0x1, "心跳".encode()[:4]), 1007),  # not UTF-8 (a character cut)
        (RawClient.frame(0x1, b"fail"), 1011),  # the handler failed: this socket ends
    ]
    async with echo_server() as echo:
        for frame, code in cases:
            client, _ = await RawClient.connect(echo.port)
            client.send(frame)
            assert await client.receive_close() == code
            client.close()
            assert await asyncio.wait_for(echo.ended.get(), 5) == code


async def test_fragments_too_big_together_are_refused_before_the_last_arrives():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(client.frame(0x1, b"a" * 40, fin=False), client.frame(0x0, b"b" * 40))
        assert await client.receive_close() == 1009
        client.close()
        assert await asyncio.wait_for(echo.ended.get(), 5) == 1009


async def test_a_clients_close_is_answered_with_its_code_and_ends_the_socket():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(client.frame(0x8, (1001).to_bytes(2, "big") + b"bye"))
        assert await client.receive_close() == 1001
        assert await asyncio.wait_for(echo.ended.get(), 5) == 1001
        assert await client.at_eof()  # the server closes the connection after the handshake


async def test_a_server_close_sends_its_code_and_ends_when_the_page_answers():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(client.frame(0x1, b"close"), client.frame(0x1, b"after"))
        assert await client.receive_close() == 4000
        assert echo.ended.empty()  # waiting for the page's own close frame
        client.send(client.frame(0x1, b"later"), client.frame(0x8, (4000).to_bytes(2, "big")))
        assert await asyncio.wait_for(echo.ended.get(), 5) == 4000
        assert await client.at_eof()
        assert echo.seen == [b"close"]  # nothing after it was handed on


async def test_a_long_close_reason_is_cut_to_fit_a_control_frame():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(client.frame(0x1, b"close at length"))
        opcode, payload = await client.receive()
        assert opcode == 0x8 and len(payload) <= 125
        assert payload[2:].decode() == ("a" + "原因" * 100)[:41]  # no character cut in two
        client.close()


async def test_a_held_socket_hands_on_nothing_until_released_and_keeps_the_order():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(
            client.frame(0x1, b"hold"), client.frame(0x1, b"one"), client.frame(0x1, b"two")
        )
        sock = await asyncio.wait_for(echo.held.get(), 5)
        # a ping comes after the held messages and is parsed after them too
        client.send(client.frame(0x9, b"ping"))
        pending = asyncio.ensure_future(client.receive())
        done, _ = await asyncio.wait((pending,), timeout=0.2)
        assert not done, "a held socket answered before it was released"
        sock.send_text(b"first")
        sock.release()
        assert await pending == (0x1, b"first")
        assert await client.receive() == (0x1, b"ONE")
        assert await client.receive() == (0x1, b"TWO")
        assert await client.receive() == (0xA, b"ping")
        client.close()


async def test_a_page_that_drops_its_connection_ends_the_socket():
    async with echo_server() as echo:
        client, _ = await RawClient.connect(echo.port)
        client.send(client.frame(0x1, b"still here"))
        assert await client.receive() == (0x1, b"STILL HERE")
        client.writer.transport.abort()
        assert await asyncio.wait_for(echo.ended.get(), 5) == 1006
