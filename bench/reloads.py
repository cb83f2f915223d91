"""Connections lost to reloads: clients opening a new connection per request while the server is
reloaded (SIGHUP: gunicorn starts new workers and stops the old ones gracefully).

    .venv/bin/python bench/reloads.py [--seconds 12] [--clients 16]

Every worker has its own listening socket (SO_REUSEPORT). When a worker stops, connections the
kernel queued on its socket and the worker never accepted are reset, unless the kernel may move
them to another worker's socket (Linux 5.14 on: ``sysctl net.ipv4.tcp_migrate_req=1``). The
figures printed are for this machine's setting; run it with each setting to compare.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haraqa_site.settings")

import django  # noqa: E402

django.setup()

from queues.management.commands.serve import MIGRATE_SYSCTL  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.e2e.client import HaraqaClient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haraqa-reloads-"))
    server = start_server([str(workdir / "v1")], workdir / "data", "--workers", "2")
    try:
        client = HaraqaClient(server.url)
        client.create("reloads")
        client.produce("reloads", [b"x" * 100])
        client.close()
        answered, failed = count_while_reloading(server, args.seconds, args.clients)
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    setting = Path(MIGRATE_SYSCTL).read_text().strip() if os.path.exists(MIGRATE_SYSCTL) else "absent"
    print(f"# bench/reloads.py --seconds {args.seconds:g} --clients {args.clients}; {time.strftime('%Y-%m-%d')}")
    print(f"tcp_migrate_req={setting} reloads={int(args.seconds)} answered={answered} "
          f"failed={sum(failed.values())} {dict(failed)}")


def count_while_reloading(server, seconds: float, clients: int) -> tuple[int, collections.Counter]:
    """Requests answered and failed (by error) while the server is reloaded once a second."""
    host, port = server.url.removeprefix("http://").split(":")
    answered, failed, guard, stop = [0], collections.Counter(), threading.Lock(), threading.Event()

    def consume_on_new_connections() -> None:
        while not stop.is_set():
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                connection.request("GET", "/topics/reloads", headers={"X-Id": "0", "X-Limit": "1"})
                outcome = "answered" if connection.getresponse().read() == b"x" * 100 else "wrong answer"
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            finally:
                connection.close()
            with guard:
                if outcome == "answered":
                    answered[0] += 1
                else:
                    failed[outcome] += 1

    threads = [threading.Thread(target=consume_on_new_connections) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for _ in range(int(seconds)):
        time.sleep(1)
        os.kill(server.process.pid, signal.SIGHUP)
    stop.set()
    for thread in threads:
        thread.join()
    return answered[0], failed


if __name__ == "__main__":
    main()
