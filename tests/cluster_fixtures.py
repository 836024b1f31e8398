"""A real redis-server on a free port, and relay nodes as real processes, for cluster tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.test_attendance_cli import ROOT
from tests.test_cli import free_port

SECRET = "cluster-test-secret-not-for-production"


@dataclass
class RedisServer:
    url: str
    proc: subprocess.Popen

    def pause(self) -> None:
        """Stop answering (SIGSTOP): to the relay it looks like a network outage."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


@pytest.fixture
def redis_server(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None:
                pytest.fail("redis-server exited at start")
            time.sleep(0.05)  # start-up of an external server, not a test condition
    client.close()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", proc)
    yield server
    server.resume()
    proc.terminate()
    proc.wait(10)


def node_env(data: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "LR_DATA": str(data),
        "LR_SECRET": SECRET,
        "LR_LEDGER_KEY": str(data.parent / "keys" / "ledger.pem"),
        "LR_ICE_HOSTS": "127.0.0.1",
        "LR_ICE_PEER_NETWORKS": "127.0.0.0/8",
        "LR_LOG_LEVEL": "WARNING",
        "LR_HEARTBEAT_MIN_GAP": "0",  # the tests send heartbeats back to back
        "LR_NODE_TTL": "1.5",
        **extra,
    }


class Node:
    """``lecture-relay serve`` in its own process group (SIGKILL takes its workers too)."""

    def __init__(self, name: str, data: Path, redis_url: str, workers: int = 2, **env: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = node_env(
            data, LR_PORT=str(self.port), LR_NODE_ID=name, LR_REDIS_URL=redis_url, **env
        )
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    async def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        assert "listening" in line, f"node {self.name} did not start: {line!r}"
        return self

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def cli(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=node_env(data, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
