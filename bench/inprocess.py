"""CPU time per request through Django's WSGI handler in this process (no network, no wrk).

    .venv/bin/python bench/inprocess.py [--requests 2000] > bench/inprocess.txt

The same cases and baselines as bench/run.py (bench/urls.py's bare views), but timed with
``time.process_time`` around direct calls of the WSGI application, which is far less noisy
than req/s on a shared 2-core VM. Gunicorn's own per-request cost and sendfile are not
included (the file wrapper is absent, so consume bodies are read in Python here): the
ratios are lower bounds of what a real server shows. Files written by produce cases are
dropped between runs so the page cache stays small and warm.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def environ(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> dict:
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "4353", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/octet-stream", "HTTP_HOST": "127.0.0.1",
    }
    env.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in (headers or {}).items()})
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="haraqa-inprocess-")
    os.makedirs(f"{workdir}/metrics")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings", HARAQA_DATA_DIR=workdir, HARAQA_VOLUMES=f"{workdir}/v1",
        PROMETHEUS_MULTIPROC_DIR=f"{workdir}/metrics", HARAQA_ACCESS_LOG="0",
    )
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from queues.conf import get_store

    app, store = WSGIHandler(), get_store()
    for topic in ("bench", "small", "large"):
        store.create_topic(topic)
    store.produce("small", [100] * 10, io.BytesIO(os.urandom(1000)))
    store.produce("large", [1024] * 1000, io.BytesIO(os.urandom(1024 * 1000)))
    megabyte = os.urandom(1024 * 1000)

    def call(env: dict) -> None:
        env["wsgi.input"].seek(0)
        result = app(env, lambda status, headers: None)
        for _ in result:
            pass
        result.close()

    def reclaim() -> None:
        store.truncate("bench", before_id=10**12)
        for name in os.listdir(f"{workdir}/v1"):
            if name.startswith("bare-") and name != "bare-range.bin":
                os.truncate(f"{workdir}/v1/{name}", 0)

    def cost(env: dict, count: int) -> float:
        reclaim()
        for _ in range(count // 10):
            call(env)
        started = time.process_time()
        for _ in range(count):
            call(env)
        return (time.process_time() - started) / count * 1e6

    sizes = ":".join
    cases = [
        ("produce 1x100B", environ("POST", "/topics/bench", b"x" * 100, {"X-Sizes": "100"}),
         "bare DRF POST 100B", environ("POST", "/bare/drf", b"x" * 100), 1),
        ("produce 100x100B", environ("POST", "/topics/bench", b"x" * 10_000, {"X-Sizes": sizes(["100"] * 100)}),
         "bare DRF POST 10KB", environ("POST", "/bare/drf", b"x" * 10_000), 1),
        ("produce 1000x1KiB", environ("POST", "/topics/bench", megabyte, {"X-Sizes": sizes(["1024"] * 1000)}),
         "bare pwrite 1MiB", environ("POST", "/bare/pwrite/1", megabyte), 10),
        ("consume limit 1 (100B)", environ("GET", "/topics/small", b"", {"X-Id": "0", "X-Limit": "1"}),
         "bare DRF GET 100B", environ("GET", "/bare/drf"), 1),
    ]
    print(f"# bench/inprocess.py --requests {args.requests} --rounds {args.rounds}; {time.strftime('%Y-%m-%d')}")
    print("# CPU microseconds per request in-process (median of rounds); ratio = baseline / ours")
    for name, env, base_name, base_env, divisor in cases:
        count = max(args.requests // divisor, 50)
        ours, base = [], []
        for _ in range(args.rounds):
            ours.append(cost(env, count))
            base.append(cost(base_env, count))
        mine, theirs = statistics.median(ours), statistics.median(base)
        print(f"{name:24} {mine:8.1f} us | {base_name:20} {theirs:8.1f} us | ratio {theirs / mine:4.2f}", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
