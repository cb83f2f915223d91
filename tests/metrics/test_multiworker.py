"""Metrics under several gunicorn workers: every scrape, whichever worker answers it, sees every
worker's counts, also after a worker dies; serve's metrics directory goes away with the server."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from ..conftest import listening_sockets, wait_until
from ..e2e.client import HaraqaClient

pytestmark = pytest.mark.e2e

PRODUCES = 48
SCRAPES = 6


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {m[0]: float(m[1]) for m in re.findall(r"^(\S+) (\S+)$", text, re.M)}


def multiproc_dir(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))


def workers_of(pid: int) -> list[int]:
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.split("/")[2]))
    return children


def produced_by_pid(directory: str) -> dict[int, float]:
    counts = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
            if json.loads(key)[1] == "haraqa_produced_messages_total":
                counts[int(path.rsplit("_", 1)[1][:-3])] = value
    return counts


def produce(url: str, topic: str, messages: list[bytes], create: bool = False) -> None:
    client = HaraqaClient(url)  # a connection each, so gunicorn spreads them over workers
    try:
        if create:
            assert client.create(topic) == 201
        client.produce(topic, messages)
    finally:
        client.close()


def test_every_scrape_counts_all_workers_produces(server_factory, volumes):
    server = server_factory(volumes, "--workers", "4", "--threads", "2")
    wait_until(lambda: listening_sockets(server.port) == 4)  # or every connection may reach the first worker
    produce(server.url, "counted", [b"first"], create=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: produce(server.url, "counted", [b"a" * i, b"b", b""]), range(PRODUCES - 1)))

    directory = multiproc_dir(server.process.pid)
    by_pid = produced_by_pid(directory)
    assert sum(by_pid.values()) == 3 * PRODUCES - 2
    assert len([pid for pid, count in by_pid.items() if count]) >= 2, by_pid  # the test really spans workers

    for _ in range(SCRAPES):
        values = scrape(server.url)
        assert values["produce_batch_size_count"] == PRODUCES
        assert values["haraqa_produced_messages_total"] == 3 * PRODUCES - 2
        assert values['django_http_responses_total_by_status_total{status="204"}'] == PRODUCES

    # a worker killed outright: gunicorn replaces it, its counts stay
    victim = max(by_pid, key=by_pid.get)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (victim in workers_of(server.process.pid) or len(workers_of(server.process.pid)) < 4) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim not in workers_of(server.process.pid)
    for _ in range(SCRAPES):
        assert scrape(server.url)["produce_batch_size_count"] == PRODUCES

    server.kill(signal.SIGTERM)
    assert not os.path.exists(directory)


def test_each_run_starts_from_zero_and_clears_what_a_killed_run_left(server_factory, volumes):
    first = server_factory(volumes, "--workers", "2")
    produce(first.url, "restarted", [b"x"], create=True)
    assert scrape(first.url)["produce_batch_size_count"] == 1
    first_directory = multiproc_dir(first.process.pid)
    first.kill()  # SIGKILL: no cleanup ran
    second = server_factory(volumes, "--workers", "2")
    assert multiproc_dir(second.process.pid) != first_directory
    values = scrape(second.url)
    assert values["produce_batch_size_count"] == 0
    assert values['haraqa_recovery_runs_total{result="healthy"}'] == 1  # serve's startup recovery
    assert not os.path.exists(first_directory), "the next start removes what a killed server left"
