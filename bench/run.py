"""Throughput of haraqa-django against bare views in the same gunicorn, with wrk.

    make bench            # or: .venv/bin/python bench/run.py [--seconds 5] [--rounds 3]

Starts two ``manage.py serve`` servers (1 volume and 3 volumes, the same gunicorn
settings) whose URLconf adds bare Django / DRF / pwrite / sendfile views next to the
real API (bench/urls.py). Each case and its baseline run back to back, in turn first,
``--rounds`` times; the table shows median req/s, MB/s and the median of the per-round
ratios with their range. Output is committed as bench/results.txt. Machines here are small and
noisy (drift of 2x between minutes is common): read the paired ratios, not the req/s.

``--free-messages`` runs the produce cases on servers whose per-message work is free
(bench/free_messages.py), into bench/free_messages.txt: what the ratios would be at best.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import free_messages  # noqa: E402
from tests.conftest import free_port, start_server  # noqa: E402
from tests.e2e.client import HaraqaClient  # noqa: E402


@dataclass
class Case:
    name: str
    path: str  # relative to the server root
    method: str
    body_bytes: int  # request body (produce) or response body (consume)
    sizes: list[int] | None = None  # X-Sizes for a produce body
    headers: dict | None = None


def lua_script(case: Case, workdir: Path) -> Path:
    lines = [f'wrk.method = "{case.method}"']
    for key, value in (case.headers or {}).items():
        lines.append(f'wrk.headers["{key}"] = "{value}"')
    if case.method == "POST":
        body = workdir / f"{case.name.replace(' ', '_')}.body"
        body.write_bytes(os.urandom(case.body_bytes))
        lines += [
            'wrk.headers["Content-Type"] = "application/octet-stream"',
            f'local f = io.open("{body}", "rb"); wrk.body = f:read("*all"); f:close()',
        ]
        if case.sizes:
            lines.append(f'wrk.headers["X-Sizes"] = "{":".join(map(str, case.sizes))}"')
    script = workdir / f"{case.name.replace(' ', '_')}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> tuple[float, int]:
    """Requests per second and the number of requests wrk completed."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), requests


def server_cpu_seconds(server) -> float:
    """CPU time used so far by a server's processes (master and workers), from /proc."""
    pids = [server.process.pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()]
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def measure(server, case: Case, script: Path, args) -> tuple[float, float]:
    """(req/s, server CPU microseconds per request) for one wrk run of ``case``."""
    before = server_cpu_seconds(server)
    rate, requests = run_wrk(server.url + case.path, script, args.seconds, args.connections)
    return rate, (server_cpu_seconds(server) - before) / requests * 1e6


def reclaim(server, copies: int) -> None:
    """Drop what the produce cases wrote, so every round writes into a small, warm page cache
    (first-touch page faults in this VM otherwise make write throughput swing by 10x)."""
    client = HaraqaClient(server.url)
    client.request("PATCH", f"/topics/bench{copies}", b'{"truncate": 1000000000000}')
    client.close()
    for volume in server.volumes:
        for name in os.listdir(volume):
            if name.startswith("bare-") and name.endswith(".bin") and name != "bare-range.bin":
                os.truncate(os.path.join(volume, name), 0)


def produce_case(name: str, count: int, size: int, volumes: int) -> Case:
    return Case(name, f"/topics/bench{volumes}", "POST", count * size, sizes=[size] * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", help="default: bench/results.txt, or bench/free_messages.txt")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--free-messages", action="store_true", help="make per-message work free; produce cases only")
    args = parser.parse_args()
    args.output = args.output or str(REPO / "bench" / ("free_messages.txt" if args.free_messages else "results.txt"))

    workdir = Path(tempfile.mkdtemp(prefix="haraqa-bench-"))
    env = {"DJANGO_SETTINGS_MODULE": "bench.settings", free_messages.ENVIRONMENT_VARIABLE: "1" if args.free_messages else "0"}
    servers = {}
    try:
        for copies in (1, 3):
            volumes = [str(workdir / f"v{copies}-{i}") for i in range(copies)]
            servers[copies] = start_server(volumes, workdir / f"data{copies}", port=free_port(), env=env)
        prepare(servers)
        cases = [
            (produce_case("produce 1x100B", 1, 100, 1), Case("bare DRF POST 100B", "/bare/drf", "POST", 100), 1),
            (produce_case("produce 100x100B", 100, 100, 1), Case("bare DRF POST 10KB", "/bare/drf", "POST", 10_000), 1),
            (produce_case("produce 1000x1KiB 1 vol", 1000, 1024, 1),
             Case("bare pwrite 1MiB 1 file", "/bare/pwrite/1", "POST", 1024 * 1000), 1),
            (produce_case("produce 1000x1KiB 3 vols", 1000, 1024, 3),
             Case("bare pwrite 1MiB 3 files", "/bare/pwrite/3", "POST", 1024 * 1000), 3),
            (Case("consume limit 1 (100B)", "/topics/small", "GET", 100, headers={"X-Id": "0", "X-Limit": "1"}),
             Case("bare DRF GET 100B", "/bare/drf", "GET", 100), 1),
            (Case("consume limit 1000 (1KiB)", "/topics/large", "GET", 1024 * 1000,
                  headers={"X-Id": "0", "X-Limit": "1000"}),
             Case("bare sendfile 1MiB", "/bare/sendfile", "GET", 1 << 20), 1),
        ]
        extra = [(Case("bare Django POST 100B", "/bare/django", "POST", 100),
                  Case("bare DRF POST 100B", "/bare/drf", "POST", 100), 1)]
        rows = []
        for ours, base, copies in cases + extra:
            if args.only not in ours.name or (args.free_messages and not ours.name.startswith("produce")):
                continue
            server = servers[copies]
            scripts = {ours.name: lua_script(ours, workdir), base.name: lua_script(base, workdir)}
            for case in (ours, base):  # warm up
                run_wrk(server.url + case.path, scripts[case.name], 1, args.connections)
            pairs = []  # (ours, baseline) measured back to back, so drift hits both alike
            for round_number in range(args.rounds):
                measured = {}
                for case in (ours, base) if round_number % 2 == 0 else (base, ours):  # either may go first
                    reclaim(server, copies)
                    measured[case.name] = measure(server, case, scripts[case.name], args)
                pairs.append((measured[ours.name], measured[base.name]))
            rows.append((ours, base, pairs))
            print(format_row(*rows[-1]), flush=True)
        report(rows, args)
    finally:
        for server in servers.values():
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def prepare(servers) -> None:
    for copies, server in servers.items():
        client = HaraqaClient(server.url)
        client.create(f"bench{copies}")
        if copies == 1:
            client.create("small")
            client.produce("small", [os.urandom(100) for _ in range(10)])
            client.create("large")
            client.produce("large", [os.urandom(1024) for _ in range(1000)])
        client.close()
    urllib.request.urlopen(servers[1].url + "/bare/sendfile").read()


def format_row(ours: Case, base: Case, pairs: list) -> str:
    """req/s (median), MB/s, ratio = median of per-round (ours / baseline) with range, and the
    same ratio computed from server CPU time per request (baseline / ours)."""
    ours_rate = statistics.median(p[0][0] for p in pairs)
    base_rate = statistics.median(p[1][0] for p in pairs)
    ratios = sorted(p[0][0] / p[1][0] for p in pairs)
    cpu_ratio = statistics.median(p[1][1] / p[0][1] for p in pairs)
    base_cpu, ours_cpu = (statistics.median(p[side][1] for p in pairs) for side in (1, 0))
    mb = ours_rate * ours.body_bytes / 1e6
    return (f"{ours.name:26} {ours_rate:6.0f} req/s {mb:6.1f} MB/s | {base.name:24} {base_rate:6.0f} req/s"
            f" | ratio {statistics.median(ratios):4.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) | cpu ratio {cpu_ratio:4.2f}"
            f" ({base_cpu:.0f}/{ours_cpu:.0f} us)")


def report(rows, args) -> None:
    header = (
        f"# bench/run.py --seconds {args.seconds} --rounds {args.rounds} --connections {args.connections}"
        f"{' --free-messages' if args.free_messages else ''}\n"
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; gunicorn gthread, serve defaults; wrk -t1 -c{args.connections}\n"
        "# each round runs the case and its baseline back to back, in turn first; req/s are medians over the rounds;\n"
        "# ratio = median of the per-round ratios (ours / baseline), with their range;\n"
        "# cpu ratio = baseline / ours server CPU time per request (less sensitive to machine noise),\n"
        "# then the medians of that CPU time in microseconds, baseline/ours\n"
    )
    text = header + "\n".join(format_row(*row) for row in rows) + "\n"
    Path(args.output).write_text(text)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
