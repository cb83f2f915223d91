"""Recovery cost: copy throughput against plain ``cp``, ``check`` speed, startup cost per GB.

    .venv/bin/python bench/recovery.py [--mib 64] [--rounds 3] [--dir DIR] > bench/recovery.txt

Builds a store of 3 volumes in DIR (default: a temporary directory beside this script, so
on the repo's disk) holding two topics of ``--mib`` MiB each, one of 1 KiB messages and
one of 64 KiB messages, then measures (best of ``--rounds``):

- check: ``Store.check()`` on healthy volumes, deep (every message's crc, what
  ``manage.py recover`` does) and quick (structure only, what ``serve`` does at startup),
  with the files evicted from the page cache first ("cold") and read again ("warm").
- copy: the first volume is deleted and ``check(fix=True)`` repopulates it. The copy phase
  (``os.copy_file_range`` into temporary files, ``syncfs``, renames) is timed on its own and
  compared with ``cp -r`` of the same topic directories followed by ``sync``, sources
  warm for both (recovery has just read them to verify them). The whole repair is shown
  too: quick (``serve`` at startup: verifies the copy it copies from) and deep
  (``manage.py recover``: verifies both remaining copies, then copies).

Files are evicted with ``posix_fadvise(DONTNEED)`` after a sync, so only this benchmark's
files leave the cache. Sizes are MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from queues.storage import Store, repair  # noqa: E402

DATASETS = [("small", 1024), ("large", 64 * 1024)]  # topic, message size
MB = 1e6


def build(root: Path, mib: int) -> tuple[list[str], int]:
    volumes = [str(root / f"vol{i}") for i in (1, 2, 3)]
    store = Store(volumes, entries_per_segment=5000)
    store.prepare_volumes()
    data = 0
    for topic, size in DATASETS:
        store.create_topic(topic)
        per_batch = max(1, (1 << 20) // size)
        for _ in range(mib):
            body = os.urandom(per_batch * size)
            store.produce(topic, [size] * per_batch, io.BytesIO(body))
            data += len(body)
    return volumes, data


def evict(paths: list[str]) -> None:
    """Drop these files (only) from the page cache."""
    os.sync()
    for path in paths:
        for folder, _, names in os.walk(path):
            for name in names:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def warm(paths: list[str]) -> None:
    for path in paths:
        for folder, _, names in os.walk(path):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    while f.read(1 << 22):
                        pass


def best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure_check(volumes: list[str], rounds: int, deep: bool, cold: bool) -> float:
    store = Store(volumes)

    def run() -> float:
        if cold:
            evict(volumes)
        else:
            warm(volumes)
        report = None

        def go() -> None:
            nonlocal report
            report = store.check(deep=deep)

        seconds = timed(go)
        assert report is not None and report.healthy, report
        return seconds

    return best(rounds, run)


def measure_repair(volumes: list[str], rounds: int, deep: bool) -> tuple[float, float, int]:
    """(whole repair, copy phase) seconds to repopulate the deleted first volume, bytes copied."""
    copying = [0.0]
    originals = {name: getattr(repair.StagedFiles, name) for name in ("copy", "write", "publish")}

    def timed_method(method: Callable) -> Callable:
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                copying[0] += time.perf_counter() - started

        return run

    for name, method in originals.items():
        setattr(repair.StagedFiles, name, timed_method(method))
    results = []
    try:
        for _ in range(rounds):
            shutil.rmtree(volumes[0])
            evict(volumes)
            copying[0] = 0.0
            report = None

            def go() -> None:
                nonlocal report
                report = Store(volumes).check(fix=True, deep=deep)

            whole = timed(go)
            assert report is not None and report.ok, report
            results.append((whole, copying[0], report.bytes_copied))
    finally:
        for name, method in originals.items():
            setattr(repair.StagedFiles, name, method)
    return min(r[0] for r in results), min(r[1] for r in results), results[0][2]


def measure_cp(volumes: list[str], root: Path, rounds: int, sync: bool, cold: bool = False) -> float:
    sources = [os.path.join(volumes[1], topic) for topic, _ in DATASETS]

    def run() -> float:
        target = root / "cp-target"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        if cold:
            evict(sources)
        else:
            warm(sources)
        os.sync()
        command = ["cp", "-r", *sources, str(target)]

        def go() -> None:
            subprocess.run(command, check=True)
            if sync:
                subprocess.run(["sync", "-f", str(target)], check=True)

        seconds = timed(go)
        shutil.rmtree(target)
        return seconds

    return best(rounds, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB per topic (two topics, three volumes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=str(Path(__file__).parent), help="where the volumes are built")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="recovery-bench-", dir=args.dir))
    try:
        volumes, data = build(root, args.mib)
        report(volumes, data, root, args.rounds)
    finally:
        shutil.rmtree(root)


def report(volumes: list[str], data: int, root: Path, rounds: int) -> None:
    print(f"# bench/recovery.py --mib {data // (2 << 20)} --rounds {rounds}")
    print(f"# {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}; "
          f"{data / MB:.0f} MB of messages per volume (1 KiB and 64 KiB messages), 3 volumes")
    print()
    print(f"{'check, healthy volumes':<48} {'seconds':>8}  {'data MB/s':>10}  {'s per GB stored':>15}")
    for deep, label in ((True, "deep (recover, --full-recover)"), (False, "quick (serve's default)")):
        for cold in (True, False):
            seconds = measure_check(volumes, rounds, deep, cold)
            name = f"{label}, {'cold' if cold else 'warm'} cache"
            print(f"  {name:<46} {seconds:8.3f}  {data / MB / seconds:10.0f}  {seconds / (data / 1e9):15.2f}")
    print()
    quick_whole, quick_copy, copied = measure_repair(volumes, rounds, deep=False)
    deep_whole, deep_copy, _ = measure_repair(volumes, rounds, deep=True)
    cp_warm = measure_cp(volumes, root, rounds, sync=True)
    cp_cold = measure_cp(volumes, root, rounds, sync=True, cold=True)
    cp_plain = measure_cp(volumes, root, rounds, sync=False)
    print(f"{'repopulate a deleted volume':<48} {'seconds':>8}  {'MB/s':>10}  {'vs cp -r + sync':>15}")
    rows = [
        ("recovery copy phase, sources in cache", min(quick_copy, deep_copy), cp_warm),
        ("cp -r + sync -f, sources in cache", cp_warm, cp_warm),
        ("cp -r, sources in cache, no sync", cp_plain, cp_warm),
        ("whole repair, quick (serve), cold: verify 1", quick_whole, cp_cold),
        ("whole repair, deep (recover), cold: verify 2", deep_whole, cp_cold),
        ("cp -r + sync -f, cold", cp_cold, cp_cold),
    ]
    for name, seconds, baseline in rows:
        print(f"  {name:<46} {seconds:8.3f}  {copied / MB / seconds:10.0f}  {baseline / seconds:14.2f}x")


if __name__ == "__main__":
    main()
