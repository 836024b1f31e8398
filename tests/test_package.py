"""The product installs from its wheel alone (issue 26): every module imports from the
installed package, the pages come with it, and the command runs, outside the checkout.

The editable install of scripts/setup hid that ``pip install .`` left out server.attendance,
server.cluster and server.programme (36 modules)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, json, sys
from pathlib import Path
names, prefix = json.loads(sys.argv[1]), Path(sys.prefix).resolve()
outside = {}
for name in names:
    module = importlib.import_module(name)
    if prefix not in Path(module.__file__).resolve().parents:
        outside[name] = module.__file__
from server.routes.pages import STATIC
print(json.dumps({"outside": outside, "static": str(STATIC)}))
"""


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.split()


def modules() -> list[str]:
    names = []
    for path in tracked("server", "media"):
        if path.endswith(".py") and not path.endswith("__main__.py"):
            parts = Path(path).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def run(*args: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_wheel_installs_every_module_and_the_pages(tmp_path):
    source = tmp_path / "source"  # what git holds, nothing a build or an editable install left
    for path in tracked():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", wheels, source, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("lecture_relay-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheel, cwd=tmp_path)
    # the dependencies come from the test environment, after the fresh venv's own packages; a
    # path in a .pth is not a site folder, so the checkout's editable finder stays out
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    (Path(site.strip()) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    names = modules()
    assert {"server.attendance.ledger", "server.cluster.node", "server.programme.store"} <= set(
        names
    )
    got = json.loads(run(python, "-c", PROBE, json.dumps(names), cwd=tmp_path))
    assert got["outside"] == {}, got  # each one imported from the installed package
    static = Path(got["static"])
    assert venv.resolve() in static.resolve().parents, static
    shipped = {p for p in tracked("static") if (static / Path(p).relative_to("static")).is_file()}
    assert shipped == set(tracked("static"))

    help_text = run(venv / "bin" / "lecture-relay", "--help", cwd=tmp_path)
    assert "serve" in help_text, help_text
