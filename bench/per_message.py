"""What a produce does per message that a bare upload view never does, each step timed alone.

    .venv/bin/python bench/per_message.py > bench/per_message.txt

For batches of 1, 100 and 1000 messages: parsing ``X-Sizes``, checking the sizes, hashing
every message (xxh3), the messages' offsets and packing their index records. These are the
engine's own functions, run hot in a loop (best of 9), so the figures are a floor: in a
server they cost more. The last column compares their sum with what the issue's targets
leave for them over the bare view that the in-process benchmark measures for the same batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
from itertools import accumulate
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haraqa_site.settings")

import django  # noqa: E402

django.setup()

from queues.api.headers import parse_sizes  # noqa: E402
from queues.storage import Store  # noqa: E402
from queues.storage.records import message_hashes, pack_index  # noqa: E402

# (messages, size, the bare view bench/inprocess.py compares that batch with, the target ratio)
BATCHES = [(1, 100, "bare DRF POST 100B", 0.8), (100, 100, "bare DRF POST 10KB", 0.8),
           (1000, 1024, "bare pwrite 1MiB", 0.9)]


def best_us(function, number: int = 2000) -> float:
    return min(timeit.repeat(function, number=number, repeat=9)) / number * 1e6


def main() -> None:
    baselines = _inprocess_baselines()
    store = Store([str(REPO / "data" / "unused")])  # check_sizes touches no volume
    print(f"# bench/per_message.py; {time.strftime('%Y-%m-%d')}; microseconds per batch, best of 9 hot loops")
    print(f"# {'batch':>10} | parse  check   hash offsets  index |   sum | allowed by the target over the bare view")
    for count, size, bare, target in BATCHES:
        sizes, data = [size] * count, memoryview(os.urandom(count * size))
        header = ":".join(map(str, sizes))
        offsets = list(accumulate(sizes[:-1], initial=0))
        hashes = message_hashes(data, sizes)
        now = time.time_ns()
        steps = [
            best_us(lambda: parse_sizes(header)),
            best_us(lambda: store.check_sizes(sizes)),
            best_us(lambda: message_hashes(data, sizes)),
            best_us(lambda: list(accumulate(sizes[:-1], initial=0))),
            best_us(lambda: pack_index(offsets, sizes, hashes, now)),
        ]
        allowed = baselines.get(bare)
        room = f"{allowed * (1 / target - 1):6.1f} ({bare} {allowed:.0f} us, target {target})" if allowed else "n/a"
        print(f"{count:>6}x{size:<5} | " + " ".join(f"{step:6.1f}" for step in steps) + f" | {sum(steps):5.1f} | {room}")


def _inprocess_baselines() -> dict[str, float]:
    """The bare views' CPU per request from the committed bench/inprocess.txt."""
    found = {}
    for line in (REPO / "bench" / "inprocess.txt").read_text().splitlines():
        if line.startswith("#") or "|" not in line:
            continue
        bare = line.split("|")[1].strip()
        name, value = bare.rsplit(None, 2)[0], float(bare.rsplit(None, 2)[1])
        found[name] = value
    return found


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
