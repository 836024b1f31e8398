"""The tests' one way to call the relay's JSON API: an HTTP request with a bearer token."""

from __future__ import annotations


async def call(
    relay,
    method: str,
    path: str,
    token: str | None = None,
    json: object = None,
    data: object = None,
    headers: dict | None = None,
    ctype: str | None = None,
) -> tuple[int, dict]:
    """``method path`` on ``relay`` with ``token`` (if any) as its bearer; ``json`` or
    ``data`` (with ``ctype`` as its Content-Type) as the body. Returns the status and the
    answer's JSON (every answer of the API, refusals included, is JSON)."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if ctype:
        h["Content-Type"] = ctype
    async with relay.http.request(
        method, relay.base_url + path, json=json, data=data, headers=h
    ) as resp:
        return resp.status, await resp.json()


async def call_in_pieces(
    relay,
    method: str,
    path: str,
    body: bytes,
    ctype: str,
    token: str | None = None,
    pieces: int = 3,
    pause_s: float = 0.2,
    chunked: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """``method path`` with ``body`` written in ``pieces`` TCP writes ``pause_s`` apart, as a
    real link delivers it (or in chunked transfer encoding, without a Content-Length).
    Returns the status, the headers (lower-case names) and the answer's body."""
    import asyncio
    from urllib.parse import urlsplit

    url = urlsplit(relay.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Type: {ctype}"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    head.append("Connection: close")
    if token:
        head.append(f"Authorization: Bearer {token}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    step = -(-len(body) // pieces) if body else 1
    try:
        for i in range(0, len(body), step):
            await asyncio.sleep(pause_s)  # the gap between segments is the point of the test
            part = body[i : i + step]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # refused before the whole body was sent: the answer is still there to read
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head_bytes, _, answer = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        answer = _unchunk(answer)
    return int(lines[0].split()[1]), headers, answer


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
