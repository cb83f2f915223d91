"""Make a produce's per-message work free, to measure what is left: ``bench/run.py --free-messages``.

With ``HARAQA_BENCH_FREE_MESSAGES=1`` the benchmark server (bench/urls.py) replaces the
steps that cost something per message with lookups of results computed once per batch
shape: parsing ``X-Sizes``, checking the sizes, hashing each message, its offset and
packing the index records. What a produce then costs over the bare view is what no
faster per-message loop (compiled or not) could remove. The index records written are
zeros, so consumes of what such a server stored fail: only the produce cases run.
"""

from __future__ import annotations

import os

ENVIRONMENT_VARIABLE = "HARAQA_BENCH_FREE_MESSAGES"


def wanted() -> bool:
    return os.environ.get(ENVIRONMENT_VARIABLE) == "1"


def install() -> None:
    from queues.api import headers
    from queues.storage import produce
    from queues.storage.store import Store

    parsed: dict[str, list[int]] = {}  # X-Sizes text -> the very same list every time
    totals: dict[int, int] = {}  # id of such a list (kept alive by ``parsed``) -> its sum
    hashes: dict[int, list[int]] = {}
    records: dict[int, bytes] = {}
    parse_sizes, check_sizes = headers.parse_sizes, Store.check_sizes

    def parse_sizes_once(value):
        if value not in parsed:
            parsed[value] = parse_sizes(value)
        return parsed[value]

    def check_sizes_once(store, sizes):
        if id(sizes) not in totals:
            totals[id(sizes)] = check_sizes(store, sizes)
        return totals[id(sizes)]

    def zero_hashes(data, sizes):
        return hashes.setdefault(len(sizes), [0] * len(sizes))

    def zero_records(offsets, lengths, hashes, timestamp_ns):
        return records.setdefault(len(lengths), bytes(produce.RECORD_SIZE * len(lengths)))

    def no_offsets(iterable, initial=None):
        return ()

    headers.parse_sizes = parse_sizes_once
    Store.check_sizes = check_sizes_once
    produce.message_hashes, produce.pack_index = zero_hashes, zero_records
    produce.accumulate = no_offsets  # used for pack_index's offsets, and by batches too big to read whole
    assert produce.PREREAD_BYTES >= 1024 * 1000  # which the bench does not send
