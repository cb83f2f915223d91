"""Many topic watches on one server: idle cost, and every watch told of a write.

    .venv/bin/python bench/watches.py [--topics 1000] [--per-topic 2] > bench/watches.txt

Starts ``manage.py serve`` (default workers and threads, 2 volumes), creates ``--topics``
topics and opens ``--per-topic`` websocket watches on each. Prints how long opening them
took, the server's CPU (all processes) while they sit idle for 5 s, and how long it took,
producing one message to every topic in turn, until every watch had its frame. Then it
times 200 one-message consumes while the watches are open.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port, start_server  # noqa: E402
from tests.e2e.client import HaraqaClient  # noqa: E402
from tests.e2e.websocket import OP_TEXT, RawWebSocket  # noqa: E402

IDLE_SECONDS = 5


def cpu_seconds(pids: list[int]) -> float:
    ticks = sum(sum(map(int, Path(f"/proc/{pid}/stat").read_text().split()[13:15])) for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--per-topic", type=int, default=2)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a descriptor per watch, here too
    workdir = Path(tempfile.mkdtemp(prefix="bench-watches-"))
    server = start_server([str(workdir / "v1"), str(workdir / "v2")], workdir / "data", port=free_port())
    watches: list[tuple[str, RawWebSocket]] = []
    try:
        client = HaraqaClient(server.url)
        topics = [f"watched/{n}" for n in range(args.topics)]
        for topic in topics:
            client.create(topic)
        began = time.monotonic()
        for topic in topics:
            watches += [(topic, RawWebSocket.connect(server.port, topics=[topic])) for _ in range(args.per_topic)]
        opened = time.monotonic() - began
        assert all(socket_.status == 101 for _, socket_ in watches)
        pids = [server.process.pid] + [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()]
        before = cpu_seconds(pids)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(pids) - before) / IDLE_SECONDS
        began = time.monotonic()
        for topic in topics:
            client.produce(topic, [b"x"])
        told = sum(socket_.frame() == (OP_TEXT, topic.encode()) for topic, socket_ in watches)
        all_told = time.monotonic() - began
        began = time.monotonic()
        for _ in range(200):
            client.consume(topics[0], 0, 1)
        consumes = time.monotonic() - began
        print(f"# bench/watches.py --topics {args.topics} --per-topic {args.per_topic}")
        print(f"# {platform.platform()}, {os.cpu_count()} cpus; serve defaults, 2 volumes")
        print(f"opened {len(watches)} watches in {opened:.2f} s")
        print(f"idle for {IDLE_SECONDS} s: server CPU {idle * 100:.1f}% of one core (all processes)")
        print(f"one produce to each topic: {told} of {len(watches)} watches told within {all_told:.2f} s")
        print(f"200 one-message consumes with the watches open: {consumes:.2f} s")
    finally:
        for _, socket_ in watches:
            socket_.close()
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
