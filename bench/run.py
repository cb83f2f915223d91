"""Throughput of haraqa-django against bare views in the same gunicorn, with wrk.

    make bench            # or: .venv/bin/python bench/run.py [--seconds 5] [--rounds 3]

Starts two ``manage.py serve`` servers (1 volume and 3 volumes, the same gunicorn
settings) whose URLconf adds bare Django / DRF / pwrite / sendfile views next to the
real API (bench/urls.py), then runs each case and its baseline alternately, ``--rounds``
times, and prints the median req/s, MB/s and the ratio to the baseline. Output is
committed as bench/results.txt. Machines here are small and noisy: read the ratios.
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


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def produce_case(name: str, count: int, size: int, volumes: int) -> Case:
    return Case(name, f"/topics/bench{volumes}", "POST", count * size, sizes=[size] * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", default=str(REPO / "bench" / "results.txt"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="haraqa-bench-"))
    env = {"DJANGO_SETTINGS_MODULE": "bench.settings"}
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
            url = servers[copies].url
            ours_script, base_script = lua_script(ours, workdir), lua_script(base, workdir)
            ours_rates, base_rates = [], []
            for _ in range(args.rounds):
                ours_rates.append(run_wrk(url + ours.path, ours_script, args.seconds, args.connections))
                base_rates.append(run_wrk(url + base.path, base_script, args.seconds, args.connections))
            rows.append((ours, statistics.median(ours_rates), base, statistics.median(base_rates)))
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


def format_row(ours: Case, ours_rate: float, base: Case, base_rate: float) -> str:
    mb = ours_rate * ours.body_bytes / 1e6
    return (f"{ours.name:28} {ours_rate:9.0f} req/s {mb:8.1f} MB/s | {base.name:26} {base_rate:9.0f} req/s"
            f" | ratio {ours_rate / base_rate:5.2f}")


def report(rows, args) -> None:
    header = (
        f"# bench/run.py --seconds {args.seconds} --rounds {args.rounds} --connections {args.connections}\n"
        f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; gunicorn gthread, serve defaults; wrk -t1 -c{args.connections}\n"
        "# median of the rounds; ratio = ours / baseline in the same server and run\n"
    )
    text = header + "\n".join(format_row(*row) for row in rows) + "\n"
    Path(args.output).write_text(text)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
