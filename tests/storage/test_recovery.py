"""Recovery and integrity on real files: every fault of the matrix, then the exact messages
served and byte-identical volumes. No Django here: the engine stands alone."""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from queues.storage import (
    Corruption,
    GroupOffsetCorrupt,
    InvalidGroup,
    MessageDamaged,
    NoContent,
    Store,
    TopicNotFound,
    VolumeError,
)
from queues.storage import verify
from queues.storage.layout import TopicDir
from queues.storage.records import RECORD_SIZE, Commit, IndexRecord

from ..faults import flip_byte as flip

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
ENTRIES = 5
COUNT = 23  # segments 0, 5, 10, 15 and the active one, 20, holding 3 messages


def messages(count: int = COUNT, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 7, 100, 333])) for _ in range(count)]


def produce(store: Store, topic: str, batch: list[bytes]) -> int:
    return store.produce(topic, [len(m) for m in batch], io.BytesIO(b"".join(batch)))


def filled(volumes: list[str], topic: str = "t", count: int = COUNT, batch: int = 4) -> tuple[Store, list[bytes]]:
    store = Store(volumes, entries_per_segment=ENTRIES)
    store.prepare_volumes()
    store.create_topic(topic)
    sent = messages(count)
    for i in range(0, count, batch):
        produce(store, topic, sent[i : i + batch])
    return store, sent


def served(store: Store, topic: str = "t") -> list[bytes | None]:
    """Every message from id 0, reading as a client would; None where a message is refused."""
    out: list[bytes | None] = []
    while True:
        try:
            out.extend(store.consume(topic, len(out), 1000).messages())
        except MessageDamaged as exc:
            assert exc.message_id == len(out)
            out.append(None)
        except NoContent:
            return out


def tree(volume: str) -> dict[str, bytes]:
    """Every file of a volume but its lock files, by relative path."""
    files = {}
    for root, dirs, names in os.walk(volume):
        dirs[:] = [d for d in dirs if d != ".locks"]
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, volume)] = Path(path).read_bytes()
    return files


def assert_identical(volumes: list[str]) -> None:
    trees = [tree(v) for v in volumes]
    for volume, other in zip(volumes[:-1], trees[:-1]):
        assert sorted(other) == sorted(trees[-1]), volume
        assert other == trees[-1], volume


def seg(volume: str, first: int, suffix: str, topic: str = "t") -> str:
    return TopicDir(volume, topic).segment_path(first, suffix)


def record(volume: str, message_id: int, topic: str = "t", entries: int = ENTRIES) -> IndexRecord:
    first = message_id - message_id % entries
    raw = Path(seg(volume, first, "idx", topic)).read_bytes()[(message_id - first) * RECORD_SIZE :][:RECORD_SIZE]
    return IndexRecord.unpack(raw)


def data_offset(volume: str, message_id: int, topic: str = "t", entries: int = ENTRIES) -> tuple[str, int]:
    """Path of a message's data file and the offset of its first byte."""
    first = message_id - message_id % entries
    return seg(volume, first, "dat", topic), record(volume, message_id, topic, entries).offset


def repaired(store: Store, volumes: list[str], sent: list[bytes]) -> None:
    """A fix leaves nothing to do, serves exactly ``sent`` and identical volumes."""
    report = store.check(fix=True)
    assert report.ok, report.lines()
    assert store.check().healthy, store.check().lines()
    assert served(store) == sent
    assert_identical(volumes)


@pytest.fixture(params=[verify.READ_CHUNK, 64], ids=["4MiB-reads", "64B-reads"])
def chunk(request, monkeypatch) -> int:
    """Run a test with the real read size and with one that splits messages across reads."""
    monkeypatch.setattr(verify, "READ_CHUNK", request.param)
    return request.param


# healthy volumes


def test_healthy_volumes_report_nothing_and_are_left_untouched(volumes, chunk):
    store, sent = filled(volumes)
    before = [tree(v) for v in volumes]
    report = store.check(fix=True)
    assert report.healthy and report.ok and report.lines() == []
    assert (report.topics, report.segments, report.bytes_copied) == (1, 5, 0)
    assert report.bytes_checked == 3 * sum(map(len, sent))
    assert [tree(v) for v in volumes] == before
    assert served(store) == sent


def test_quick_check_reads_no_message_data_on_healthy_volumes(volumes):
    store, _ = filled(volumes)
    report = store.check(deep=False)
    assert report.healthy and report.bytes_checked == 0


def test_dry_run_reports_without_changing_a_byte(volumes):
    store, _ = filled(volumes)
    os.unlink(seg(volumes[0], 5, "dat"))
    path, offset = data_offset(volumes[2], 12)
    flip(path, offset)
    before = [tree(v) for v in volumes]
    report = store.check()
    assert not report.ok and report.repaired == 0
    assert {(p.volume, p.what, p.segment) for p in report.problems} == {
        (volumes[0], "data file missing", 5),
        (volumes[2], "data corrupt", 10),
    }
    assert [tree(v) for v in volumes] == before


# lost volumes and topic directories


@pytest.mark.parametrize("lost", [0, 1, 2], ids=["first", "middle", "last"])
def test_a_deleted_volume_is_repopulated(volumes, lost):
    store, sent = filled(volumes)
    shutil.rmtree(volumes[lost])
    report = store.check(fix=True)
    assert [p.what for p in report.problems] == ["volume missing", "topic missing"]
    assert report.bytes_copied == sum(map(len, sent)) + COUNT * RECORD_SIZE
    repaired(store, volumes, sent)


def test_an_emptied_last_volume_is_repopulated_from_the_one_before(volumes):
    store, sent = filled(volumes)
    shutil.rmtree(volumes[2])
    os.makedirs(volumes[2])
    repaired(store, volumes, sent)


def test_a_topic_missing_on_some_volumes_is_copied_with_nested_names_and_groups(volumes):
    store, sent = filled(volumes, topic="a/b")
    store.consume_group("a/b", "readers", 0, 3)
    shutil.rmtree(os.path.join(volumes[0], "a"))
    shutil.rmtree(os.path.join(volumes[2], "a", "b"))
    report = store.check(fix=True)
    assert {(p.volume, p.what) for p in report.problems} == {(volumes[0], "topic missing"), (volumes[2], "topic missing")}
    assert store.check().healthy
    assert served(store, "a/b") == sent
    assert TopicDir(volumes[0], "a/b").read_group("readers") == 3
    assert_identical(volumes)


# segment files: missing, short, overlong


@pytest.mark.parametrize("suffix", ["dat", "idx"])
@pytest.mark.parametrize("volume", [0, 2])
def test_a_deleted_segment_file_is_restored(volumes, suffix, volume):
    store, sent = filled(volumes)
    os.unlink(seg(volumes[volume], 10, suffix))
    report = store.check(fix=True)
    what = "data file missing" if suffix == "dat" else "index file missing"
    assert [(p.volume, p.what, p.segment, p.repaired) for p in report.problems] == [(volumes[volume], what, 10, True)]
    repaired(store, volumes, sent)


def test_a_truncated_data_file_is_rebuilt(volumes, chunk):
    store, sent = filled(volumes)
    path, offset = data_offset(volumes[2], 7)
    os.truncate(path, offset + 1)
    report = store.check(fix=True)
    short = [p for p in report.problems if p.what == "data file short"]
    assert short and short[0].ids == [(7, 9)] and short[0].volume == volumes[2]
    repaired(store, volumes, sent)


def test_a_truncated_index_file_is_rebuilt(volumes):
    store, sent = filled(volumes)
    os.truncate(seg(volumes[1], 15, "idx"), 2 * RECORD_SIZE + 5)
    report = store.check(fix=True)
    assert [(p.what, p.ids) for p in report.problems] == [("index file short", [(17, 19)])]
    repaired(store, volumes, sent)


def test_overlong_files_of_a_closed_segment_are_trimmed(volumes):
    store, sent = filled(volumes)
    for suffix in ("dat", "idx"):
        with open(seg(volumes[0], 5, suffix), "ab") as f:
            f.write(b"garbage" * 10)
    report = store.check(fix=True)
    assert sorted(p.what for p in report.problems) == ["data file overlong", "index file overlong"]
    repaired(store, volumes, sent)


def test_a_torn_tail_past_the_commit_is_trimmed_and_stray_segments_removed(volumes):
    store, sent = filled(volumes)
    for volume in volumes:  # a writer killed before its commit: bytes, records and a new segment
        with open(seg(volume, 20, "dat"), "ab") as f:
            f.write(b"uncommitted")
        with open(seg(volume, 20, "idx"), "ab") as f:
            f.write(IndexRecord(9999, 0, 11, 0).pack()[:20])
        Path(seg(volume, 25, "dat")).write_bytes(b"next segment")
        Path(seg(volume, 25, "idx")).write_bytes(b"")
    report = store.check(fix=True, deep=False)
    assert report.ok
    assert not os.path.exists(seg(volumes[1], 25, "dat"))
    assert os.path.getsize(seg(volumes[1], 20, "dat")) == sum(map(len, sent[20:]))
    repaired(store, volumes, sent)
    produce(store, "t", [b"after"])
    assert served(store)[-1] == b"after"


def test_stale_temporary_files_of_a_killed_repair_are_removed(volumes):
    store, sent = filled(volumes)
    Path(seg(volumes[0], 5, "dat") + ".999.tmp").write_bytes(b"half copied")
    Path(TopicDir(volumes[2], "t").commit_path + ".999.tmp").write_bytes(b"x")
    report = store.check(fix=True)
    assert len(report.problems) == 2 and all("leftover files removed" in p.what for p in report.problems)
    repaired(store, volumes, sent)


# flipped bytes


def test_a_flipped_data_byte_is_found_by_the_deep_check_and_repaired(volumes, chunk):
    store, sent = filled(volumes)
    path, offset = data_offset(volumes[2], 12)
    flip(path, offset + 150)
    assert store.check(deep=False).healthy  # structure intact: only the data crc tells
    report = store.check(fix=True)
    assert [(p.volume, p.what, p.ids) for p in report.problems] == [(volumes[2], "data corrupt", [(12, 12)])]
    repaired(store, volumes, sent)


@pytest.mark.parametrize("field_offset", [0, 8, 16, 20, 24, 28], ids=["offset", "time", "length", "crc", "flags", "seal"])
def test_a_flipped_index_record_byte_is_repaired(volumes, field_offset):
    store, sent = filled(volumes)
    flip(seg(volumes[2], 5, "idx"), 3 * RECORD_SIZE + field_offset)
    report = store.check(fix=True, deep=False)
    assert [(p.volume, p.what, p.ids) for p in report.problems] == [(volumes[2], "index records corrupt", [(8, 8)])]
    repaired(store, volumes, sent)


@pytest.mark.parametrize("volume", [0, 2])
def test_a_flipped_commit_byte_is_repaired(volumes, volume):
    store, sent = filled(volumes)
    flip(TopicDir(volumes[volume], "t").commit_path, 3)
    report = store.check(fix=True)
    assert [(p.volume, p.what) for p in report.problems] == [(volumes[volume], "commit record corrupt")]
    repaired(store, volumes, sent)


def test_a_commit_corrupt_on_every_volume_is_rebuilt_from_the_segments(volumes):
    store, sent = filled(volumes)
    for volume in volumes:
        flip(TopicDir(volume, "t").commit_path, 0)
    report = store.check(fix=True)
    assert report.ok and "rebuilt from the segment files (next id 23)" in report.problems[0].what
    repaired(store, volumes, sent)


def test_different_messages_damaged_on_different_volumes_are_merged_message_by_message(volumes, chunk):
    store, sent = filled(volumes)
    for volume, message_id in ((2, 11), (1, 12), (0, 11), (2, 13), (1, 14)):
        path, offset = data_offset(volumes[volume], message_id)
        flip(path, offset)
    report = store.check(fix=True)
    assert report.ok and report.unrepairable == 0
    repaired(store, volumes, sent)


def test_index_and_data_damage_on_different_volumes_still_repairs(volumes):
    store, sent = filled(volumes)
    flip(seg(volumes[2], 10, "idx"), 1 * RECORD_SIZE + 16)  # message 11's record on the last volume
    path, offset = data_offset(volumes[1], 11)
    flip(path, offset)  # message 11's bytes on the middle volume
    repaired(store, volumes, sent)


@pytest.mark.parametrize("lost", [0, 2], ids=["first-volume-lost", "last-volume-lost"])
def test_a_quick_repair_verifies_what_it_copies_and_never_copies_a_bad_message(volumes, chunk, lost):
    store, sent = filled(volumes)
    shutil.rmtree(volumes[lost])
    source = 1 if lost == 2 else 2  # the copy recovery reads first: the last one still there
    path, offset = data_offset(volumes[source], 12)
    flip(path, offset + 7)
    report = store.check(fix=True, deep=False)
    assert report.ok and report.bytes_checked == sum(map(len, sent))  # one copy read, not two
    assert (volumes[source], "data corrupt", [(12, 12)]) in [(p.volume, p.what, p.ids) for p in report.problems]
    repaired(store, volumes, sent)


def test_a_quick_repair_of_a_short_last_copy_reads_the_whole_one(volumes, chunk):
    store, sent = filled(volumes)
    path, offset = data_offset(volumes[2], 8)
    os.truncate(path, offset + 2)
    report = store.check(fix=True, deep=False)
    assert [(p.volume, p.what, p.ids) for p in report.problems] == [(volumes[2], "data file short", [(8, 9)])]
    repaired(store, volumes, sent)


# damage on every copy


def test_a_message_corrupt_on_every_volume_is_reported_and_never_served(volumes, chunk):
    store, sent = filled(volumes)
    for volume in volumes:
        path, offset = data_offset(volume, 12)
        flip(path, offset + 1)
    report = store.check(fix=True)
    assert [(lost.topic, lost.first_id, lost.last_id) for lost in report.lost] == [("t", 12, 12)]
    assert not report.ok and report.unrepairable == 1
    assert store.consume("t", 10, 100).messages() == sent[10:12]  # stops before the damaged one
    with pytest.raises(MessageDamaged, match="message 12 of topic 't' is damaged on every volume"):
        store.consume("t", 12, 1)
    assert store.consume("t", 13, 100).messages() == sent[13:15]
    assert served(store) == sent[:12] + [None] + sent[13:]
    assert_identical(volumes)
    before = [tree(v) for v in volumes]
    again = store.check(fix=True)  # idempotent: still reported, nothing rewritten
    assert [(lost.first_id, lost.last_id) for lost in again.lost] == [(12, 12)] and again.problems == []
    assert [tree(v) for v in volumes] == before


def test_a_consumer_group_stops_at_a_damaged_message_and_can_skip_it(volumes):
    store, sent = filled(volumes)
    for volume in volumes:
        path, offset = data_offset(volume, 2)
        flip(path, offset)
    store.check(fix=True)
    assert store.consume_group("t", "g", -1, 10).messages() == sent[:2]
    with pytest.raises(MessageDamaged):
        store.consume_group("t", "g", -1, 10)
    assert store.consume_group("t", "g", 3, 10).messages() == sent[3:5]


def test_index_records_lost_on_every_volume_are_rebuilt_as_damaged(volumes):
    store, sent = filled(volumes)
    for volume in volumes:
        flip(seg(volume, 5, "idx"), 1 * RECORD_SIZE + 28)
        flip(seg(volume, 5, "idx"), 2 * RECORD_SIZE + 28)
    report = store.check(fix=True)
    assert [(lost.first_id, lost.last_id) for lost in report.lost] == [(6, 7)]
    assert served(store) == sent[:6] + [None, None] + sent[8:]
    assert_identical(volumes)


def test_a_segment_missing_on_every_volume_is_reported_as_lost(volumes):
    store, sent = filled(volumes)
    for volume in volumes:
        for suffix in ("dat", "idx"):
            os.unlink(seg(volume, 10, suffix))
    report = store.check(fix=True)
    # ids 10..14 now read as part of segment 5, whose index has 5 records: the rest are lost
    assert [(lost.first_id, lost.last_id) for lost in report.lost] == [(10, 14)]
    assert served(store) == sent[:10] + [None] * 5 + sent[15:]
    assert_identical(volumes)
    produce(store, "t", [b"still writable"])
    assert served(store)[-1] == b"still writable"


def test_data_a_truncate_cut_short_left_behind_is_removed_not_reported_lost(volumes):
    from queues.storage import MessageIdTruncated

    store, sent = filled(volumes)
    for volume in volumes:  # a truncate removes each volume's index, then its data: killed before the last data
        os.unlink(seg(volume, 0, "idx"))
        if volume != volumes[-1]:
            os.unlink(seg(volume, 0, "dat"))
    with pytest.raises(MessageIdTruncated) as truncated:  # readers list segments by their index
        store.consume("t", 0, 1)
    assert truncated.value.first_id == 5
    report = store.check()
    assert [(p.what, p.volume) for p in report.problems] == [("leftover files: 00000000000000000000.dat", volumes[-1])]
    assert report.lost == []
    assert store.check(fix=True).ok
    assert not os.path.exists(seg(volumes[-1], 0, "dat"))
    assert store.check().healthy
    assert store.consume("t", 5, 0).messages() == sent[5:10]
    assert_identical(volumes)


# commits that disagree


def test_a_commit_a_crash_left_behind_on_the_last_volume_is_rolled_forward(volumes):
    store, sent = filled(volumes)
    TopicDir(volumes[2], "t").write_commit(Commit(21, 20, len(sent[20])), durable=False)
    report = store.check(fix=True)
    assert [p.what for p in report.problems] == ["commit record behind (next id 21, rolled forward to 23)"]
    repaired(store, volumes, sent)


def test_any_group_name_works_and_recovery_keeps_it(volumes):
    store, sent = filled(volumes)
    names = ["jobs.tmp", "jobs.12.tmp", "team/worker", ".hidden", "with space", "grüppe", "g" * 300, "..", "%2F"]
    for name in names:
        assert store.consume_group("t", name, 0, 3).messages() == sent[:3]
    files = os.listdir(os.path.join(TopicDir(volumes[0], "t").path, ".groups"))
    assert len(files) == len(names) and all("/" not in f and "." not in f and len(f) <= 200 for f in files)
    assert store.check(fix=True).healthy  # none taken for a crashed writer's leftover
    for name in names:
        assert store.consume_group("t", name, -1, 2).messages() == sent[3:5], name
    with pytest.raises(InvalidGroup):
        store.consume_group("t", "", 0, 1)


def test_consumer_group_offsets_are_replicated(volumes):
    store, _ = filled(volumes)
    store.consume_group("t", "g", 0, 4)
    os.unlink(TopicDir(volumes[0], "t").group_path("g"))
    flip(TopicDir(volumes[1], "t").group_path("g"), 0)
    report = store.check(fix=True)
    assert sorted(p.volume for p in report.problems) == volumes[:2]
    assert [TopicDir(v, "t").read_group("g") for v in volumes] == [4, 4, 4]
    assert_identical(volumes)


def test_a_group_offset_unreadable_everywhere_is_refused_until_recovery_resets_it(volumes):
    store, sent = filled(volumes)
    store.consume_group("t", "g", 0, 5)
    flip(TopicDir(volumes[2], "t").group_path("g"), 0)
    assert store.consume_group("t", "g", -1, 2).messages() == sent[5:7]  # another volume's record
    for volume in volumes:
        flip(TopicDir(volume, "t").group_path("g"), 1)
    with pytest.raises(GroupOffsetCorrupt):  # not silently restarted from 0: haraqa's 500
        store.consume_group("t", "g", -1, 2)
    report = store.check(fix=True)
    reset = "consumer group 'g': offset corrupt on every volume, reset to the first message"
    assert [p.what for p in report.problems] == [reset]
    assert store.consume_group("t", "g", -1, 2).messages() == sent[:2]


# degraded reads and writes through faults


def test_reads_fall_back_to_another_volume_when_the_last_copy_is_missing(volumes):
    store, sent = filled(volumes)
    os.unlink(seg(volumes[2], 10, "dat"))
    os.unlink(seg(volumes[2], 15, "idx"))
    os.truncate(seg(volumes[2], 5, "dat"), 3)
    flip(seg(volumes[2], 0, "idx"), 16)  # a record's length: the sizes no longer add up
    assert served(store) == sent
    assert store.degraded_reads == 4
    assert store.consume("t", 20, 10).messages() == sent[20:]
    assert store.degraded_reads == 4


def test_reads_fall_back_when_the_topic_is_gone_from_the_last_volume(volumes):
    store, sent = filled(volumes)
    shutil.rmtree(volumes[2])
    assert served(store) == sent
    with pytest.raises(TopicNotFound):
        store.consume("nothing", 0, 1)


def test_a_read_fails_clearly_when_no_volume_has_the_segment(volumes):
    store, _ = filled(volumes)
    for volume in volumes:
        os.truncate(seg(volume, 5, "dat"), 0)
    with pytest.raises(Corruption, match="segment 5"):
        store.consume("t", 6, 1)


def test_a_produce_repairs_a_topic_missing_on_a_volume_first(volumes):
    store, sent = filled(volumes)
    shutil.rmtree(volumes[0])
    os.makedirs(volumes[0])
    os.unlink(seg(volumes[1], 20, "dat"))
    assert produce(store, "t", [b"x", b"yz"]) == COUNT
    assert served(store) == sent + [b"x", b"yz"]
    assert store.check().healthy
    assert_identical(volumes)


def test_a_produce_repairs_a_corrupt_commit_first(volumes):
    store, sent = filled(volumes)
    flip(TopicDir(volumes[1], "t").commit_path, 9)
    produce(store, "t", [b"x"])
    assert served(store) == sent + [b"x"]
    assert_identical(volumes)


# interruption and concurrency


def test_a_repair_killed_at_any_step_completes_on_the_next_run(volumes, tmp_path):
    store, sent = filled(volumes, count=60, batch=7)
    shutil.rmtree(volumes[0])
    for message_id in (3, 33):
        path, offset = data_offset(volumes[2], message_id)
        flip(path, offset)
    os.unlink(seg(volumes[1], 40, "idx"))
    pristine = [tmp_path / "pristine" / str(i) for i in range(len(volumes))]
    for volume, copy in zip(volumes[1:], pristine[1:]):
        shutil.copytree(volume, copy)
    kills = 0
    for steps in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89):  # kill -9 after that many progress reports
        if _run_check_killed_after(volumes, steps) == 0:
            break
        kills += 1
        again = Store(volumes, entries_per_segment=ENTRIES).check(fix=True)
        assert again.ok, (steps, again.lines())
        assert served(store) == sent
        assert_identical(volumes)
        for volume, copy in zip(volumes, pristine):  # the same damage again for the next kill
            shutil.rmtree(volume)
            if copy.exists():
                shutil.copytree(copy, volume)
    assert kills >= 5


def _run_check_killed_after(volumes: list[str], steps: int) -> int:
    code = (
        "import os, signal, sys\n"
        "from queues.storage import Store\n"
        "calls = [0]\n"
        "def progress(done, total, item):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {steps}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"Store({volumes!r}, entries_per_segment={ENTRIES}).check(fix=True, progress=progress)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert result.returncode in (0, -signal.SIGKILL)
    return result.returncode


def while_running(jobs: list[Callable[[], None]], action: Callable[[], T]) -> list[T]:
    """Run ``jobs`` in threads and ``action`` over and over (at least once) until they end."""
    failures: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    results = []
    while any(t.is_alive() for t in threads) or not results:
        results.append(action())
    for thread in threads:
        thread.join()
    assert failures == []
    return results


def test_check_with_fix_while_producers_write_loses_nothing(volumes):
    store, sent = filled(volumes)
    os.unlink(seg(volumes[0], 5, "dat"))
    acknowledged: list[bytes] = []

    def producer(worker: int) -> None:
        writer = Store(volumes, entries_per_segment=ENTRIES)
        for n in range(40):
            batch = [f"w{worker}-{n}-{k}".encode() for k in range(3)]
            produce(writer, "t", batch)
            acknowledged.extend(batch)

    reports = while_running(
        [lambda w=w: producer(w) for w in range(2)], lambda: Store(volumes, entries_per_segment=ENTRIES).check(fix=True)
    )
    assert all(report.ok for report in reports)
    assert store.check().healthy
    everything = served(store)
    assert everything[:COUNT] == sent and sorted(everything[COUNT:]) == sorted(acknowledged)
    assert_identical(volumes)


# arguments


def test_only_the_requested_topics_are_checked(volumes):
    store, _ = filled(volumes)
    store.create_topic("other")
    os.unlink(seg(volumes[0], 0, "dat", "other"))
    assert store.check(topics=["T"]).healthy
    assert not store.check(topics=["other"]).healthy
    with pytest.raises(TopicNotFound):
        store.check(topics=["missing"])


def test_a_file_in_place_of_a_volume_is_refused(volumes):
    store, _ = filled(volumes)
    shutil.rmtree(volumes[1])
    Path(volumes[1]).write_text("not a directory")
    with pytest.raises(VolumeError):
        store.check(fix=True)


def test_progress_goes_up_to_the_total(volumes):
    store, sent = filled(volumes)
    calls: list[tuple[int, int, str]] = []
    store.check(progress=lambda done, total, item: calls.append((done, total, item)))
    total = 3 * (sum(map(len, sent)) + COUNT * RECORD_SIZE)
    assert calls[-1][:2] == (total, total)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert any(item == "t segment 15" for _, _, item in calls)
