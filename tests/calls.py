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
