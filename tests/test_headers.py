"""Security headers: every page and every answer of the API (issue 24, item 13).

The browser half, that each page still runs under this policy with no violation, is
tests/browser/test_pages.py::test_every_page_opens_clean (a violation is a console error).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.routes.pages import PAGES, STATIC

STATIC_JS = STATIC / "js"


async def headers_of(relay, path: str, token: str | None = None) -> tuple[int, dict]:
    h = {"Authorization": f"Bearer {token}"} if token else {}
    async with relay.http.get(relay.base_url + path, headers=h) as resp:
        await resp.read()
        return resp.status, resp.headers


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_each_page_has_the_policy_and_is_never_stored(relay, path):
    status, h = await headers_of(relay, path)
    assert status == 200
    policy = h["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in h  # no TLS in this relay


async def test_json_with_tokens_refusals_and_files_carry_the_headers(relay):
    links = relay.new_session()
    sid = links["session_id"]
    admin = relay.token("admin", None)
    for path, token, status in (
        (f"/api/sessions/{sid}", admin, 200),  # its JSON has the session's links
        (f"/api/sessions/{sid}/stats", None, 401),  # a refusal, from the error middleware
        ("/no/such/page", None, 404),
    ):
        got, h = await headers_of(relay, path, token)
        assert got == status, path
        assert h["Cache-Control"] == "no-store", path
        assert h["X-Content-Type-Options"] == "nosniff", path
        assert h["Referrer-Policy"] == "no-referrer", path
    # static files keep a cache (they hold no secret) and are not sniffed
    status, h = await headers_of(relay, "/static/js/relay.js")
    assert status == 200 and h.get("Cache-Control") != "no-store"
    assert h["X-Content-Type-Options"] == "nosniff"


async def test_hsts_when_the_relay_speaks_tls(tmp_path):
    """With a certificate the relay tells browsers to keep to HTTPS; without, it does not
    (a plain-HTTP HSTS header is ignored and would only mislead)."""
    import datetime
    import ssl

    import aiohttp
    from aiohttp import web
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from server.app import RUNNER_OPTIONS, create_app
    from server.config import Config

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = Config(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        secret="test-secret-not-for-production",
        ledger_key=tmp_path / "keys" / "ledger.pem",
        tls_cert=cert_path,
        tls_key=key_path,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    runner = web.AppRunner(create_app(config), **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/watch", ssl=False) as resp:
                assert resp.status == 200
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await runner.cleanup()


def _markup() -> list[tuple[Path, str]]:
    files = [STATIC / name for name in PAGES.values()]
    files += sorted(STATIC_JS.rglob("*.js"))
    return [(f, f.read_text(encoding="utf-8")) for f in files]


def test_pages_carry_no_inline_script_style_or_handler():
    """What the policy would block: an inline <script>, a style attribute, an on... handler,
    in the pages and in the markup their scripts write."""
    for path, text in _markup():
        if path.suffix == ".html":
            for tag in re.findall(r"<script\b[^>]*>", text):
                assert "src=" in tag, f"{path.name}: inline script {tag}"
            assert "<style" not in text, f"{path.name}: an inline <style> block"
        assert not re.search(r"\sstyle\s*=\s*[\"']", text), f"{path.name}: a style attribute"
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", text), f"{path.name}: an on... handler"
        assert "javascript:" not in text, f"{path.name}: a javascript: URL"
