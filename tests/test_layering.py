"""The import direction of docs/ARCHITECTURE.md, read from the source (issue 26): media <-
services <- adapters. Each rule says why it holds; a change that breaks one fails here, not in
a review."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the services: what the system does, callable from a route, the CLI or a test alike
SERVICES = (
    "server/lectures",
    "server/attendance",
    "server/programme",
    "server/classrooms",
    "server/cluster/node.py",
    "server/refusals.py",
    "server/auth.py",
)
# the HTTP adapter: what a service may not know of
ADAPTER = ("aiohttp.web", "server.routes", "server.web", "server.state", "server.app")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(*places: str) -> list[Path]:
    out: list[Path] = []
    for place in places:
        path = ROOT / place
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return out


def banned_below(banned: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(b + "." for b in banned)


def breaking(paths: list[Path], banned: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in paths:
        hits = sorted(
            m for m in imports(path) if any(m == b or m.startswith(b + ".") for b in banned)
        )
        if hits:
            out[str(path.relative_to(ROOT))] = hits
    return out


def test_the_media_plane_knows_nothing_of_the_control_plane():
    """media/ forwards packets: it runs in a media worker and in benchmarks without a server,
    and the hot path stays free of HTTP and storage."""
    assert breaking(sources("media"), ("server", "aiohttp")) == {}


def test_the_services_know_nothing_of_http():
    """A lecture is created, a rule set, a record signed the same way from the API, the CLI
    and an approved order; their refusals are server/refusals.py's, given a status in one
    place (server/web/errors.py)."""
    assert all((ROOT / s).exists() for s in SERVICES)
    assert breaking(sources(*SERVICES), ADAPTER) == {}


def test_only_the_app_factory_wires_the_routes():
    """Routes are adapters: nothing below them calls one (routes/api.py was the helper
    library of six other modules; its parsing helpers are routes/fields.py)."""
    others = [p for p in sources("server", "media") if "routes" not in p.parts]
    wiring = {k for k, v in breaking(others, ("server.routes",)).items() if v}
    assert wiring == {"server/app.py"}


def test_the_product_ships_no_test_helpers():
    """The aiortc WHIP/WHEP peer and the test media serve tests and benchmarks only."""
    assert breaking(sources("server", "media"), ("tests",)) == {}
    assert not (ROOT / "server" / "client.py").exists()
    assert not (ROOT / "media" / "sources.py").exists()
