"""Security headers on every response, set just before its headers are sent.

The pages carry tokens in their URLs (personal links, room links), so no page may leak its
address (Referrer-Policy), be framed by another site, or run script that is not one of our
own files. A response's own Cache-Control wins (replays and static files set theirs); anything
else is ``no-store``: pages and the JSON API carry tokens and names.
"""

from __future__ import annotations

from aiohttp import web

# No 'unsafe-inline' anywhere: the pages' scripts are files under /static/js/pages/ and their
# styles are classes in /static/css/. Replays play from blob: URLs on some phones.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'{connect}; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# In a cluster a page's WHEP POST may be redirected to another node, named only at run time.
CLUSTER_CONNECT = " http: https: ws: wss:"
CACHEABLE = ("/static/", "/replays/", "/favicon.ico")
HSTS = "max-age=31536000"


def security_headers(policy: str, tls: bool):
    """An ``on_response_prepare`` hook: it sees every response, errors and files included."""

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if not request.path.startswith(CACHEABLE):
            headers["Cache-Control"] = "no-store"
        if tls:
            headers.setdefault("Strict-Transport-Security", HSTS)

    return prepare


def install(app: web.Application, cluster: bool, tls: bool) -> None:
    policy = PAGE_POLICY.format(connect=CLUSTER_CONNECT if cluster else "")
    app.on_response_prepare.append(security_headers(policy, tls))
