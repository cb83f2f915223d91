"""The store on real files: ids, segments, volumes, names, truncation and groups."""

from __future__ import annotations

import errno
import filecmp
import io
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from queues.storage import (
    BatchTooLarge,
    InvalidBody,
    InvalidSizes,
    InvalidTopic,
    MessageIdTruncated,
    NoContent,
    Store,
    TopicExists,
    TopicNotFound,
    VolumeError,
)

from queues.storage.handles import open_topics
from queues.storage.produce import CHUNK_BYTES, PREREAD_BYTES

from .conftest import produce, read_all


def tree(volume: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(volume):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, volume)] = f.read()
    return out


def assert_volumes_identical(store: Store) -> None:
    first = tree(store.volumes[0])
    for volume in store.volumes[1:]:
        assert tree(volume) == first


def test_engine_imports_no_django():
    code = "import sys, queues.storage; assert not any(m.startswith(('django', 'rest_framework')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_ids_are_contiguous_from_zero_across_segments(store):
    store.create_topic("t")
    assert produce(store, "t", [b"a", b"b", b"c"]) == 0
    assert produce(store, "t", [b"d", b"e", b"f", b"g"]) == 3
    assert produce(store, "t", [bytes([i]) * i for i in range(12)]) == 7
    assert read_all(store, "t") == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"] + [bytes([i]) * i for i in range(12)]
    assert store.offsets("t").max_offset == 19


def test_a_consume_never_crosses_a_segment_and_never_exceeds_the_limit(store):
    store.create_topic("t")
    produce(store, "t", [b"%d" % i for i in range(12)])
    assert store.consume("t", 3, 100).sizes == [1, 1]  # ids 3, 4: segment [0, 5)
    assert store.consume("t", 5, 2).messages() == [b"5", b"6"]
    assert store.consume("t", 10, 0).messages() == [b"10", b"11"]


def test_negative_id_returns_the_last_message(store):
    store.create_topic("t")
    produce(store, "t", [b"x", b"last"])
    batch = store.consume("t", -1, 10)
    assert (batch.first_id, batch.messages()) == (1, [b"last"])


def test_empty_topic_and_reading_past_the_end_have_no_content(store):
    store.create_topic("t")
    with pytest.raises(NoContent):
        store.consume("t", 0, 1)
    with pytest.raises(NoContent):
        store.consume("t", -1, 1)
    produce(store, "t", [b"x"])
    with pytest.raises(NoContent):
        store.consume("t", 1, 1)


def test_zero_byte_messages_keep_their_place(store):
    store.create_topic("t")
    messages = [b"", b"a", b"", b"", b"bc", b""]
    produce(store, "t", messages)
    produce(store, "t", [b""])
    assert read_all(store, "t") == messages + [b""]


def test_every_volume_holds_identical_files(store):
    store.create_topic("t")
    for i in range(7):
        produce(store, "t", [os.urandom(i * 10 + 1) for _ in range(i + 1)])
    assert_volumes_identical(store)


def test_topic_names_are_lower_cased_and_nested(store):
    store.create_topic("Orders/EU")
    store.create_topic("orders")
    produce(store, "ORDERS/eu", [b"x"])
    assert store.list_topics() == ["orders", "orders/eu"]
    assert store.list_topics("eu$") == ["orders/eu"]
    assert store.list_topics("EU$") == []
    assert store.list_topics("EU$", ignore_case=True) == ["orders/eu"]
    store.delete_topic("orders")
    assert store.list_topics() == ["orders/eu"]
    assert read_all(store, "orders/eu") == [b"x"]


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "a//b", "a/", ".", "..", "a/../b", "a/./b", ".hidden", "back\\slash", "nul\x00", "tab\tx",
     "x" * 256, "a/00000000000000000000.dat"],
)
def test_unsafe_topic_names_are_refused(store, name):
    with pytest.raises(InvalidTopic):
        store.create_topic(name)
    assert all(os.listdir(v) == [".locks"] for v in store.volumes)


def test_create_twice_and_missing_topics(store):
    store.create_topic("t")
    with pytest.raises(TopicExists):
        store.create_topic("T")
    with pytest.raises(TopicNotFound):
        produce(store, "nope", [b"x"])
    with pytest.raises(TopicNotFound):
        store.consume("nope", 0, 1)
    store.delete_topic("nope")  # deleting a missing topic is fine
    locks_dir = os.path.join(store.volumes[0], ".locks")
    assert len(os.listdir(locks_dir)) == 1  # t's: names never created leave no lock file behind


def test_names_are_lower_cased_as_gos_strings_to_lower_does(store):
    store.create_topic("ΟΔΟΣ")  # Python's lower() gives a final ς; Go's, and so haraqa's client, σ
    store.create_topic("İSTANBUL")  # Python's: i and a combining dot; Go's: i
    assert store.list_topics() == ["istanbul", "οδοσ"]
    assert produce(store, "οδοσ", [b"x"]) == 0 and produce(store, "ΟΔΟΣ", [b"y"]) == 1


def test_deleting_again_finishes_a_delete_cut_short(store):
    store.create_topic("t")
    produce(store, "t", [b"a", b"b"])
    store.consume_group("t", "g", 0, 2)
    for topic_dir in store._dirs("t"):
        os.unlink(topic_dir.commit_path)  # a delete killed right after its first step
    store.delete_topic("t")
    assert all(not os.path.exists(topic_dir.path) for topic_dir in store._dirs("t"))
    store.create_topic("t")
    produce(store, "t", [b"new"])
    assert store.consume_group("t", "g", -1, 5).messages() == [b"new"]  # the old group is gone too


def test_creating_again_finishes_a_delete_cut_short_without_its_consumer_groups(store):
    store.create_topic("t")
    produce(store, "t", [bytes([i]) for i in range(7)])  # segments 0 and 5
    store.consume_group("t", "g", 0, 5)
    for topic_dir in store._dirs("t"):
        os.unlink(topic_dir.commit_path)  # a delete killed right after its first step
    store.create_topic("t")
    produce(store, "t", [b"new"])
    assert store.consume_group("t", "g", -1, 5).messages() == [b"new"]  # not offset 5 of the old topic
    assert not any(name.startswith("00000000000000000005") for d in store._dirs("t") for name in os.listdir(d.path))


def test_a_create_that_fails_on_a_volume_leaves_the_topic_on_none(store, monkeypatch):
    from queues.storage import store as store_module

    real_write = store_module.write_file_atomically

    def full_last_volume(path, data, durable):
        if path.startswith(store.volumes[-1]):
            raise OSError(28, "No space left on device")
        real_write(path, data, durable)

    monkeypatch.setattr(store_module, "write_file_atomically", full_last_volume)
    with pytest.raises(OSError):
        store.create_topic("t")
    assert store.list_topics() == []
    assert all(not os.path.exists(d.path) for d in store._dirs("t"))
    monkeypatch.setattr(store_module, "write_file_atomically", real_write)
    store.create_topic("t")  # the name is free again
    assert produce(store, "t", [b"a"]) == 0


@pytest.mark.parametrize(
    "sizes, body, error",
    [([3, 3], b"abcde", InvalidBody), ([3], b"abcd", InvalidBody), ([], b"", InvalidSizes), ([-1], b"", InvalidSizes),
     ([1 << 33], b"", InvalidSizes)],
)
def test_bad_batches_change_nothing_on_disk(store, sizes, body, error):
    store.create_topic("t")
    produce(store, "t", [b"keep"])
    before = [tree(v) for v in store.volumes]
    with pytest.raises(error):
        store.produce("t", sizes, io.BytesIO(body))
    assert [tree(v) for v in store.volumes] == before


def test_a_failed_batch_across_a_segment_boundary_leaves_no_new_segment(store):
    store.create_topic("t")
    produce(store, "t", [b"a"] * 4)
    before = [tree(v) for v in store.volumes]
    with pytest.raises(InvalidBody):
        store.produce("t", [1] * 8, io.BytesIO(b"x" * 7))
    assert [tree(v) for v in store.volumes] == before
    assert produce(store, "t", [b"b"] * 3) == 4


def _queue_behind_the_turn(store: Store, batches: list[list[bytes]]) -> list:
    """Produce each batch from a thread of its own while this thread holds the topic's turn, so
    all of them queue; then let them go. What each produce returned or raised, in batch order."""
    files = open_topics.get(store._dirs("t"))
    outcomes: list = [None] * len(batches)

    def send(n: int) -> None:
        try:
            outcomes[n] = produce(store, "t", batches[n])
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[n] = exc

    files.take_turn()
    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(batches))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while files.queued < len(batches):
        assert time.monotonic() < deadline, f"{files.queued} of {len(batches)} batches queued"
        time.sleep(0.001)
    files.end_turn(volumes_locked=False)
    for thread in threads:
        thread.join(10)
    return outcomes


def test_small_batches_queued_meanwhile_are_written_together(store):
    store.create_topic("t")
    produce(store, "t", [b"first", b"second"])
    batches = [[f"thread {n} message {m}".encode() for m in range(3)] for n in range(4)]
    first_ids = _queue_behind_the_turn(store, batches)
    assert sorted(first_ids) == [2, 5, 8, 11]  # one after another, crossing segments of 5
    stored = read_all(store, "t")
    assert all(stored[first : first + 3] == batch for first, batch in zip(first_ids, batches))
    stamps = {(r.start_time_ns, r.end_time_ns) for r in (store.consume("t", n, 0) for n in (2, 5, 10))}
    assert len(stamps) == 1 and len(set(stamps.pop())) == 1  # one write: one timestamp for all 12
    assert_volumes_identical(store)


def test_batches_written_together_fail_together_and_leave_nothing(store):
    store.create_topic("t")
    produce(store, "t", [b"kept"])
    before = [tree(v) for v in store.volumes]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))  # files may not grow past 100 bytes
    try:
        outcomes = _queue_behind_the_turn(store, [[b"x" * 50] * 3] * 3)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert all(isinstance(exc, OSError) and exc.errno == errno.EFBIG for exc in outcomes), outcomes
    assert [tree(v) for v in store.volumes] == before
    assert produce(store, "t", [b"next"]) == 1


@pytest.mark.parametrize("u32_array", [True, False])
def test_sizes_must_be_whole_numbers_that_fit_32_bits(volumes, monkeypatch, u32_array):
    from queues.storage import store as store_module

    if not u32_array:  # as where no array type has 4-byte items
        monkeypatch.setattr(store_module, "_U32", None)
    store = Store(volumes, max_batch_bytes=1 << 40)
    assert store.check_sizes([0, 2**32 - 1]) == 2**32 - 1
    for sizes in ([], [2**32], [-1], [1, 1.5], [1, "2"]):
        with pytest.raises(InvalidSizes):
            store.check_sizes(sizes)


def test_volumes_that_would_share_files_are_refused(tmp_path):
    for volumes in ([tmp_path / "a", tmp_path / "a" / "."], [tmp_path / "a", tmp_path / "a" / "b"]):
        store = Store([str(v) for v in volumes])
        with pytest.raises(VolumeError):
            store.prepare_volumes()
        with pytest.raises(VolumeError):
            store.check(fix=True)
    assert not (tmp_path / "a").exists()


def refusal_without_root(volume: str) -> str:
    """What ``prepare_volumes`` of ``volume`` says to a user who may not write there: as root, in
    a child process that has become ``nobody`` (root may write anywhere)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        message = "no error"
        try:
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            Store([volume]).prepare_volumes()
        except VolumeError as exc:
            message = str(exc)
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


NOBODY = 65534


def test_an_unwritable_volume_is_refused_as_such_and_an_uncreatable_one_as_such():
    shared = Path(tempfile.mkdtemp())  # under /tmp: every user may reach it (pytest's tmp_path is root's alone)
    locked = shared / "locked"
    try:
        shared.chmod(0o755)
        locked.mkdir(mode=0o555)
        assert refusal_without_root(str(locked)) == f"volume {locked} is not writable: Permission denied"
        new = locked / "new"
        assert refusal_without_root(str(new)) == f"volume {new} cannot be created: Permission denied"
        assert not (locked / ".locks").exists()
    finally:
        shutil.rmtree(shared)


def test_batch_size_limit(volumes):
    store = Store(volumes, max_batch_bytes=10)
    store.prepare_volumes()
    store.create_topic("t")
    with pytest.raises(BatchTooLarge):
        store.produce("t", [6, 5], io.BytesIO(b"x" * 11))


def test_large_batch_streams_in_chunks(store):
    store.create_topic("t")
    payload = os.urandom(PREREAD_BYTES + 2 * CHUNK_BYTES + 7)

    class CountingReader(io.BytesIO):
        biggest = 0

        def read(self, size=-1):
            data = super().read(size)
            CountingReader.biggest = max(CountingReader.biggest, len(data))
            return data

    store.produce("t", [len(payload)], CountingReader(payload))
    assert CountingReader.biggest <= CHUNK_BYTES
    assert store.consume("t", 0, 1).read_all() == payload


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_streamed_messages_straddling_chunks_keep_their_checksums(store, monkeypatch, chunk):
    from queues.storage import produce as produce_module

    monkeypatch.setattr(produce_module, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(produce_module, "PREREAD_BYTES", 0)
    store.create_topic("t")
    rng = random.Random(chunk)
    messages = [os.urandom(rng.choice([0, 0, 1, 5, 63, 64, 65, 200])) for _ in range(300)]
    produce(store, "t", messages)
    assert read_all(store, "t") == messages
    assert store.check().healthy
    assert_volumes_identical(store)


@pytest.mark.parametrize("missing", [1, -1])
def test_a_streamed_batch_of_the_wrong_length_leaves_nothing(store, missing):
    store.create_topic("t")
    produce(store, "t", [b"keep"])
    before = [tree(v) for v in store.volumes]
    size = PREREAD_BYTES + (1 << 20)
    with pytest.raises(InvalidBody):
        store.produce("t", [size // 2, size // 2], io.BytesIO(b"x" * (size - missing)))
    assert [tree(v) for v in store.volumes] == before


def test_torn_tail_from_a_crashed_writer_is_trimmed(store):
    store.create_topic("t")
    produce(store, "t", [b"abc", b"de"])
    for volume in store.volumes:  # garbage a killed writer left beyond the commit
        with open(os.path.join(volume, "t", f"{0:020d}.dat"), "ab") as f:
            f.write(b"GARBAGE")
        with open(os.path.join(volume, "t", f"{0:020d}.idx"), "ab") as f:
            f.write(b"\x01" * 40)
    assert store.consume("t", 0, 10).messages() == [b"abc", b"de"]
    produce(store, "t", [b"f"])
    assert read_all(store, "t") == [b"abc", b"de", b"f"]
    assert_volumes_identical(store)
    assert os.path.getsize(os.path.join(store.volumes[0], "t", f"{0:020d}.dat")) == 6


def test_commit_written_to_only_some_volumes_rolls_forward(store):
    store.create_topic("t")
    produce(store, "t", [b"a"])
    commit_path = os.path.join(store.volumes[-1], "t", ".commit")
    with open(commit_path, "rb") as f:
        old_commit = f.read()
    produce(store, "t", [b"b", b"c"])
    with open(commit_path, "wb") as f:  # as if killed before the last commit write
        f.write(old_commit)
    assert read_all(store, "t") == [b"a"]
    produce(store, "t", [b"d"])
    assert read_all(store, "t") == [b"a", b"b", b"c", b"d"]
    assert_volumes_identical(store)


def test_truncate_removes_whole_old_segments_only(store):
    store.create_topic("t")
    produce(store, "t", [b"%d" % i for i in range(12)])
    offsets = store.truncate("t", before_id=7)
    assert (offsets.min_offset, offsets.max_offset) == (5, 12)
    with pytest.raises(MessageIdTruncated):
        store.consume("t", 2, 1)
    assert read_all(store, "t", 5) == [b"%d" % i for i in range(5, 12)]
    assert store.truncate("t", before_id=100).min_offset == 10  # the active segment stays
    assert_volumes_identical(store)


def test_truncate_by_time(store):
    store.create_topic("t")
    produce(store, "t", [b"x"] * 6)
    assert store.truncate("t", before=datetime.now(timezone.utc) - timedelta(hours=1)).min_offset == 0
    assert store.truncate("t", before=datetime.now(timezone.utc) + timedelta(seconds=1)).min_offset == 5


def test_consumer_group_advances_and_survives_a_new_store(store, volumes):
    store.create_topic("t")
    produce(store, "t", [b"a", b"b", b"c"])
    assert store.consume_group("t", "g", -1, 2).messages() == [b"a", b"b"]
    reopened = Store(volumes, entries_per_segment=5)
    assert reopened.consume_group("t", "g", -1, 2).messages() == [b"c"]
    with pytest.raises(NoContent):
        reopened.consume_group("t", "g", -1, 2)
    assert reopened.consume_group("t", "other", -1, 1).messages() == [b"a"]


def test_a_group_behind_a_truncate_goes_on_from_the_first_stored_message(store):
    store.create_topic("t")
    produce(store, "t", [b"%d" % n for n in range(12)])  # segments of 5: 0-4, 5-9, 10-11
    assert store.consume_group("t", "g", -1, 2).messages() == [b"0", b"1"]
    store.truncate("t", before_id=10)
    assert store.consume_group("t", "g", -1, 5).messages() == [b"10", b"11"]
    with pytest.raises(NoContent):
        store.consume_group("t", "g", -1, 5)
    with pytest.raises(MessageIdTruncated):  # an explicit id still gets the truth
        store.consume_group("t", "g", 3, 5)


def test_a_re_created_topic_is_read_whole_whatever_the_segment_list_remembers(store):
    """The segment list a reader caches ends at the active segment like the new topic's, but
    lacks its first segments: reading them must look again, not answer "truncated"."""
    store.create_topic("t")
    produce(store, "t", [b"old"] * 20)  # segments of 5: 0, 5, 10, 15
    store.truncate("t", before_id=10)
    with pytest.raises(MessageIdTruncated):
        store.consume("t", 2, 1)  # the cached list is now [10, 15]
    store.delete_topic("t")
    store.create_topic("t")
    produce(store, "t", [b"new %d" % n for n in range(20)])
    assert store.consume("t", 7, 2).messages() == [b"new 7", b"new 8"]
    assert store.consume_group("t", "g", -1, 3).messages() == [b"new 0", b"new 1", b"new 2"]


def test_delete_then_recreate_starts_from_zero(store):
    store.create_topic("t")
    produce(store, "t", [b"x"] * 7)
    store.consume("t", 0, 1)  # warm the segment cache
    store.delete_topic("t")
    with pytest.raises(TopicNotFound):
        store.consume("t", 0, 1)
    store.create_topic("t")
    assert produce(store, "t", [b"new"]) == 0
    assert read_all(store, "t") == [b"new"]
    assert not filecmp.dircmp(store.volumes[0], store.volumes[2]).diff_files


def test_listing_and_offsets_survive_the_loss_of_the_last_volume(store):
    import shutil

    store.create_topic("t")
    produce(store, "t", [b"x"] * 7)
    shutil.rmtree(store.volumes[-1])
    assert store.list_topics() == ["t"]
    assert (store.offsets("t").min_offset, store.offsets("t").max_offset) == (0, 7)
    assert read_all(store, "t") == [b"x"] * 7  # a degraded read from the volume before it


def test_truncate_after_the_last_volume_was_lost_repairs_it_first(store):
    import shutil

    store.create_topic("t")
    produce(store, "t", [b"%d" % i for i in range(12)])
    shutil.rmtree(store.volumes[-1])
    assert store.truncate("t", before_id=6).min_offset == 5
    assert read_all(store, "t", 5) == [b"%d" % i for i in range(5, 12)]
    assert tree(store.volumes[0]) == tree(store.volumes[-1])


def test_fsync_batch_syncs_data_index_and_commit_on_every_volume_before_returning(volumes, monkeypatch):
    """A spy around the real fdatasync/fsync records which files were made durable."""
    synced: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def spy(real):
        def sync(fd):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            return real(fd)
        return sync

    store = Store(volumes, entries_per_segment=2, fsync="batch")
    store.prepare_volumes()
    store.create_topic("t")
    monkeypatch.setattr(os, "fdatasync", spy(real_fdatasync))
    monkeypatch.setattr(os, "fsync", spy(real_fsync))
    produce(store, "t", [b"a", b"b", b"c"])  # rolls into a new segment: its directory is synced too
    for volume in store.volumes:
        topic = os.path.join(volume, "t")
        for name in (f"{0:020d}.dat", f"{0:020d}.idx", f"{2:020d}.dat", f"{2:020d}.idx", ".commit"):
            assert os.path.join(topic, name) in synced, name
        assert topic in synced
    assert read_all(store, "t") == [b"a", b"b", b"c"]


def test_fsync_never_makes_no_sync_call(store, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd))
    store.create_topic("t")
    produce(store, "t", [b"a"] * 7)
    assert calls == []


@pytest.mark.parametrize("damage", ["short data", "missing index"])
def test_produce_repairs_a_volume_whose_current_segment_is_damaged(store, damage):
    store.create_topic("t")
    produce(store, "t", [b"abc", b"defg"])
    segment = os.path.join(store.volumes[1], "t", f"{0:020d}")
    if damage == "short data":
        os.truncate(segment + ".dat", 2)
    else:
        os.unlink(segment + ".idx")
    produce(store, "t", [b"h"])
    assert read_all(store, "t") == [b"abc", b"defg", b"h"]
    assert_volumes_identical(store)
