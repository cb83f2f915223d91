"""Throughput of haraqa-django against haraqa's own Go server, with wrk, on bench/run.py's cases.

    .venv/bin/python bench/vs_go.py --go "/path/to/haraqa-server -http {port} {volume}"

``--go`` is the command that starts the Go server (built from a haraqa checkout, e.g. commit
e6c7ec5, with ``go build`` in ``cmd/server``); ``{port}`` and ``{volume}`` are filled in. The
stock binary listens on every address: on a shared machine give it one that binds loopback.
Both servers get one volume; ours runs with ``serve``'s defaults. Each case runs on both back to
back, in turn first, ``--rounds`` times; the table has the same columns as results.txt, with
the Go server as the baseline. Output: bench/vs_go.txt.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from run import Case, format_row, lua_script, server_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port, start_server  # noqa: E402
from tests.e2e.client import HaraqaClient  # noqa: E402

@dataclass
class GoServer:
    """The fields of tests.conftest.Server that ``measure`` reads."""

    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def start_go(command: str, volume: Path) -> GoServer:
    port = free_port()
    argv = [part.format(port=port, volume=volume) for part in shlex.split(command)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = GoServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{server.url}/topics", timeout=2).read()
            return server
        except OSError:
            if server.process.poll() is not None:
                raise RuntimeError(f"the Go server exited with {server.process.returncode}: {argv}") from None
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the Go server did not answer: {argv}")


def fill(url: str) -> None:
    """The topics of every case: 'bench' to produce to, 'small' (10 x 100 B) and 'large'
    (1000 x 1 KiB) to consume from; the same bytes on both servers."""
    client = HaraqaClient(url)
    for topic in ("bench", "small", "large"):
        client.create(topic)
    client.produce("small", [bytes([i]) * 100 for i in range(10)])
    client.produce("large", [bytes([i % 256]) * 1024 for i in range(1000)])
    client.close()


def forget_produced(url: str) -> None:
    """Drop what the produce cases wrote, so every round writes into a small page cache: the
    topic deleted and made anew (a truncate would not do: haraqa's removes even the file it
    is writing, and its next produces fail)."""
    client = HaraqaClient(url)
    client.request("DELETE", "/topics/bench")
    client.create("bench")
    client.close()


def measure(server, case: Case, script: Path, args) -> tuple[float, float, int]:
    """(successful req/s, server CPU microseconds per request, failed requests) for one wrk run.
    Unlike bench/run.py's, failures are counted, not fatal: the Go server answers some
    concurrent produces with 500 EOF (docs/WIRE.md)."""
    before = server_cpu_seconds(server)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s", str(script), server.url + case.path],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = server_cpu_seconds(server) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    failed = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    seconds = requests / float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return (requests - failed) / seconds, cpu / requests * 1e6, failed


CASES = [
    Case("produce 1x100B", "/topics/bench", "POST", 100, sizes=[100]),
    Case("produce 100x100B", "/topics/bench", "POST", 100 * 100, sizes=[100] * 100),
    Case("produce 1000x1KiB", "/topics/bench", "POST", 1000 * 1024, sizes=[1024] * 1000),
    Case("consume limit 1 (100B)", "/topics/small", "GET", 100, headers={"X-Id": "0", "X-Limit": "1"}),
    Case("consume limit 1000 (1KiB)", "/topics/large", "GET", 1000 * 1024, headers={"X-Id": "0", "X-Limit": "1000"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--go", required=True, help="command starting the Go server, with {port} and {volume}")
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", default=str(REPO / "bench" / "vs_go.txt"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="haraqa-vs-go-"))
    servers = []
    try:
        ours = start_server([str(workdir / "ours")], workdir / "data")
        servers.append(ours)
        go = start_go(args.go, workdir / "go")
        servers.append(go)
        for server in servers:
            fill(server.url)
        rows = []
        for case in CASES:
            script = lua_script(case, workdir)
            theirs = Case("haraqa's Go server", case.path, case.method, case.body_bytes)
            pairs, failed = [], {ours.url: 0, go.url: 0}
            for round_number in range(args.rounds):
                measured = {}
                for server in servers if round_number % 2 == 0 else servers[::-1]:
                    forget_produced(server.url)
                    rate, cpu, errors = measure(server, case, script, args)
                    measured[server.url], failed[server.url] = (rate, cpu), failed[server.url] + errors
                pairs.append((measured[ours.url], measured[go.url]))
            rows.append(format_row(case, theirs, pairs) + f" | failed: ours {failed[ours.url]}, Go {failed[go.url]}")
            print(rows[-1], flush=True)
        header = (
            f"# bench/vs_go.py --seconds {args.seconds} --rounds {args.rounds} --connections {args.connections}\n"
            f"# {time.strftime('%Y-%m-%d')}; ours: serve's defaults, 1 volume; baseline: haraqa's Go server, 1 volume\n"
            "# req/s count successful answers; ratio = median of per-round req/s ratios (ours / Go);\n"
            "# cpu ratio = Go / ours server CPU per request; failed = non-2xx answers over all rounds\n"
        )
        Path(args.output).write_text(header + "\n".join(rows) + "\n")
        print(f"\nwritten to {args.output}")
    finally:
        for server in servers:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
