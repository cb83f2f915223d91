"""Admin statistics over real files: topic figures, volume health, segment checks, browsing."""

from __future__ import annotations

import os
import shutil
import threading

from queues.storage import Store
from queues.storage.stats import browse, segment_table, served_stats, topic_health, topic_stats, volume_stats

from .conftest import produce as append


def produce(store, topic: str, messages: list[bytes]) -> int:
    if topic not in store.list_topics():
        store.create_topic(topic)
    return append(store, topic, messages)


def test_topic_stats_count_what_the_commit_counts(store):
    store.create_topic("t")
    assert topic_stats(store.volumes[-1], "t").messages == 0
    produce(store, "t", [b"abc"] * 12)
    stats = topic_stats(store.volumes[-1], "t")
    assert (stats.first_id, stats.last_id, stats.messages, stats.bytes, stats.segments) == (0, 11, 12, 36, 3)
    store.truncate("t", before_id=6)
    stats = topic_stats(store.volumes[-1], "t")
    assert (stats.first_id, stats.messages, stats.bytes, stats.segments) == (5, 7, 21, 2)
    assert topic_stats(store.volumes[-1], "missing") is None


def test_an_uncommitted_tail_is_not_counted(store):
    produce(store, "t", [b"abc"] * 2)
    for volume in store.volumes:
        with open(os.path.join(volume, "t", "00000000000000000000.dat"), "ab") as f:
            f.write(b"garbage from a crashed writer")
    assert topic_stats(store.volumes[-1], "t").bytes == 6


def test_health_compares_every_volume_with_the_last(store):
    produce(store, "t", [b"a"] * 3)
    assert [b.health for b in topic_health(store.volumes, "t")] == ["ok", "ok", "ok"]
    os.unlink(os.path.join(store.volumes[1], "t", ".commit"))
    assert [b.health for b in topic_health(store.volumes, "t")] == ["ok", "missing", "ok"]
    open(os.path.join(store.volumes[0], "t", "00000000000000000003.idx"), "wb").close()  # not committed: ignored
    assert topic_health(store.volumes, "t")[0].health == "ok"


def test_segment_table_reports_each_kind_of_damage(store):
    produce(store, "t", [b"%d" % i for i in range(10)])  # segments 0 and 5
    first, second, last = store.volumes
    os.truncate(os.path.join(first, "t", "00000000000000000005.dat"), 2)
    os.truncate(os.path.join(second, "t", "00000000000000000005.idx"), 64)
    with open(os.path.join(last, "t", "00000000000000000000.dat"), "r+b") as f:
        f.write(b"X")
    table = {
        v.volume: [(s.first_id, s.status, s.bad_ids) for s in v.segments]
        for v in segment_table(store.volumes, "t", True)
    }
    assert table[first] == [(0, "ok", []), (5, "data file short", [7, 8, 9])]
    assert table[second] == [(0, "ok", []), (5, "index file short", [7, 8, 9])]
    assert table[last] == [(0, "data corrupt", [0]), (5, "ok", [])]
    unverified = segment_table(store.volumes, "t", False)
    assert [s.status for s in unverified[-1].segments] == ["not verified", "ok"]  # structure differs: data read


def test_messages_damaged_everywhere_are_listed_on_every_volume(store):
    produce(store, "t", [b"aaaa", b"bbbb"])
    for volume in store.volumes:
        with open(os.path.join(volume, "t", "00000000000000000000.dat"), "r+b") as f:
            f.write(b"X")
    store.check(fix=True)
    rows = [v.segments[0] for v in segment_table(store.volumes, "t", True)]
    assert [(r.status, r.lost_ids) for r in rows] == [("damaged", [0])] * 3
    assert [(m.id, m.damaged) for m in browse(store, "t", 0, 5, 10)] == [(0, True), (1, False)]


def test_segment_table_uses_the_last_volume_holding_the_topic(store):
    produce(store, "t", [b"x"] * 7)
    shutil.rmtree(os.path.join(store.volumes[-1], "t"))
    tables = segment_table(store.volumes, "t", True)
    assert [v.health for v in tables] == ["out of sync", "out of sync", "missing"]
    assert [s.status for s in tables[0].segments] == ["ok", "ok"]
    assert [s.status for s in tables[-1].segments] == ["index file missing, data file missing"] * 2


def test_browse_crosses_segments_and_returns_heads_only(store):
    produce(store, "t", [b"%02d" % i for i in range(8)])
    produce(store, "t", [b"y" * 1000])
    found = browse(store, "t", 3, 4, preview_bytes=100)
    assert [(m.id, m.head, m.checksum_ok) for m in found] == [(i, b"%02d" % i, True) for i in range(3, 7)]
    big = browse(store, "t", 8, 10, preview_bytes=100)
    assert [(m.id, m.size, len(m.head), m.complete, m.checksum_ok) for m in big] == [(8, 1000, 100, False, None)]
    assert browse(store, "t", 9, 5, 100) == []
    assert len({m.timestamp_ns for m in browse(store, "t", 0, 9, 1)}) == 2  # one timestamp per batch


def test_volume_stats_count_topics_and_spot_missing_or_stale_ones(store):
    produce(store, "a", [b"x"])
    produce(store, "b/c", [b"y"])
    assert [(v.topics, v.health) for v in volume_stats(store.volumes)] == [(2, "ok")] * 3
    shutil.rmtree(store.volumes[0])
    with open(os.path.join(store.volumes[1], "a", ".commit"), "r+b") as f:
        f.write(b"\x00" * 8)
    stats = volume_stats(store.volumes)
    assert [(v.exists, v.topics, v.missing_topics, v.health) for v in stats] == [
        (False, 0, 2, "missing"),
        (True, 2, 0, "degraded"),
        (True, 2, 0, "ok"),
    ]
    assert stats[1].out_of_sync_topics == 1
    assert stats[2].free_bytes > 0 and stats[2].total_bytes >= stats[2].free_bytes


def test_volumes_being_written_are_not_called_out_of_sync(volumes):
    """Nothing here takes the topic lock, and a batch is committed volume by volume: reads
    between two of its commits must not report healthy volumes as out of sync."""
    store = Store(volumes, entries_per_segment=1 << 20)  # one segment: each read stays cheap
    store.prepare_volumes()
    store.create_topic("t")
    stop = threading.Event()

    def keep_producing() -> None:
        while not stop.is_set():
            append(store, "t", [b"b"] * 3)

    writer = threading.Thread(target=keep_producing)
    writer.start()
    try:
        seen = set()
        for _ in range(300):
            seen.update(badge.health for badge in topic_health(store.volumes, "t"))
            seen.update(v.out_of_sync_topics for v in volume_stats(store.volumes))
    finally:
        stop.set()
        writer.join()
    assert store.offsets("t").max_offset > 300  # writes did race the reads
    assert seen == {"ok", 0}


def test_stats_come_from_the_volume_serving_the_topic(store):
    produce(store, "t", [b"abc"] * 4)
    shutil.rmtree(os.path.join(store.volumes[-1], "t"))  # the last volume lost it: consumes read another
    stats, volume = served_stats(store.volumes, "t")
    assert (stats.messages, volume) == (4, store.volumes[-2])
    assert served_stats(store.volumes, "missing") == (None, store.volumes[-1])
