"""Fixtures shared by every test area: volumes in tmp dirs and a real ``manage.py serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition, seconds: float = 30) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def tcp_sockets(port: int) -> list[list[str]]:
    """The IPv4 TCP sockets on local ``port``: rows of /proc/net/tcp (state in [3], queues in [4])."""
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return [row for row in rows if row[1].endswith(f":{port:04X}")]


def listening_sockets(port: int) -> int:
    """Workers listening on ``port`` (each has its own socket): a server answers once the first does."""
    return sum(1 for row in tcp_sockets(port) if row[3] == "0A")


@pytest.fixture
def volumes(tmp_path: Path) -> list[str]:
    """Three volume directories (not yet created: the store creates them)."""
    return [str(tmp_path / f"vol{i}") for i in (1, 2, 3)]


@pytest.fixture
def api_volumes(settings, volumes: list[str]) -> list[str]:
    """Point the Django app (test client) at fresh volumes."""
    settings.HARAQA_VOLUMES = volumes
    settings.HARAQA_ENTRIES = 5
    return volumes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``manage.py serve`` process."""

    url: str
    port: int
    volumes: list[str]
    process: subprocess.Popen
    log_path: Path

    def workers(self) -> list[int]:
        """The pids of its gunicorn workers (the master's children)."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in found.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (gunicorn master and workers)."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    volumes: list[str], data_dir: Path, *extra: str, port: int | None = None, env: dict | None = None
) -> Server:
    """Start ``manage.py serve`` in its own process group and wait until it answers."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full_env = {**inherited, "HARAQA_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, str(REPO / "manage.py"), "serve", "--port", str(port), *extra, *volumes]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", port, volumes, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            urllib.request.urlopen(f"{server.url}/topics", timeout=2).read()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"server did not start:\n{server.log()}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start servers on demand; all are killed at teardown."""
    started: list[Server] = []

    def factory(volumes: list[str], *extra: str, **kwargs) -> Server:
        server = start_server(volumes, tmp_path / "data", *extra, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill()


@pytest.fixture
def server(server_factory, volumes: list[str]) -> Server:
    """A server with 2 workers over 3 volumes, segments of 50 messages."""
    return server_factory(volumes, "--workers", "2", "--threads", "4", "--entries", "50")
