"""Logs an operator can ship (issue 27): ``LR_LOG_FORMAT=json`` writes one object a line, and
neither format lets a token or a phone number through."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request

from server.auth import TokenSigner
from server.logs import JsonFormatter, TextFormatter
from tests.test_cli import ROOT, cli_env, free_port, run_cli
from tests.waiting import wait_health

TOKEN = TokenSigner(b"k" * 32).issue("member", "s1", "M1", 3600)


def record(message: str, *args, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError(f"bad {TOKEN}")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("server.x", logging.WARNING, __file__, 1, message, args, info)


def test_a_json_line_is_one_object_with_tokens_and_phones_masked():
    line = JsonFormatter("serve").format(record("join %s from %s", TOKEN, "13812345678", exc=True))
    got = json.loads(line)
    assert (got["level"], got["process"], got["logger"]) == ("WARNING", "serve", "server.x")
    assert got["message"] == "join [token] from 138****5678"
    assert "[token]" in got["exception"] and got["time"].endswith("Z")
    assert TOKEN not in line and "13812345678" not in line
    text = TextFormatter("%(message)s").format(record("%s %s", TOKEN, "13812345678"))
    assert text == "[token] 138****5678"


def test_serve_logs_json_lines_and_no_token_from_a_request(tmp_path):
    """Every line serve writes to standard error is one JSON object (at DEBUG, so that there
    are lines: the relay logs no request, and a page's URL carries its token)."""
    port = free_port()
    env = cli_env(tmp_path, {"LR_LOG_FORMAT": "json", "LR_LOG_LEVEL": "DEBUG"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--workers", "1", "--port", str(port),
         "--data", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        proc.stdout.readline()  # listening
        wait_health(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/watch?token={TOKEN}") as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    parsed = [json.loads(line) for line in lines]  # every line is one object
    assert {p["process"] for p in parsed} == {"serve"}
    assert {"time", "level", "logger", "message"} <= set(parsed[0])
    assert TOKEN not in err


def test_a_bad_setting_is_named_without_a_traceback(tmp_path):
    done = run_cli(tmp_path, "doctor", env={"LR_LOG_FORMAT": "yaml"})
    assert done.returncode == 2
    assert done.stderr.strip() == "lecture-relay: LR_LOG_FORMAT='yaml': text or json"
