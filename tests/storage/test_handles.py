"""Descriptors kept open between produces: never trusted once their files are replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from queues.storage import Store, TopicNotFound, handles

from .conftest import produce, read_all
from .test_store import assert_volumes_identical


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_topic_deleted_and_recreated_by_another_store_gets_the_new_files(store, volumes):
    store.create_topic("t")
    produce(store, "t", [b"old"])
    other = Store(list(volumes), entries_per_segment=5)  # another server sharing the volumes
    other.delete_topic("t")
    with pytest.raises(TopicNotFound):
        produce(store, "t", [b"lost"])
    other.create_topic("t")
    assert produce(store, "t", [b"new"]) == 0
    assert read_all(other, "t") == [b"new"]
    assert_volumes_identical(store)


def test_a_wiped_volume_is_repaired_not_written_through_stale_descriptors(store, volumes):
    store.create_topic("t")
    produce(store, "t", [b"a", b"b"])
    shutil.rmtree(volumes[-1])
    os.makedirs(volumes[-1])
    produce(store, "t", [b"c"])
    assert read_all(store, "t") == [b"a", b"b", b"c"]  # read from the last volume
    assert_volumes_identical(store)


def point(link: str, target: str) -> None:
    """Make the symlink ``link`` lead to ``target`` in one step, as an operator swapping disks would."""
    os.symlink(target, link + ".new")
    os.replace(link + ".new", link)


@pytest.fixture
def disks(tmp_path) -> tuple[Store, str, str]:
    """A store whose last volume is a symlink to one of two disks, the second one empty."""
    old, new = str(tmp_path / "disk-old"), str(tmp_path / "disk-new")
    os.makedirs(new)
    os.makedirs(old)
    link = str(tmp_path / "vol3")
    os.symlink(old, link)
    store = Store([str(tmp_path / "vol1"), str(tmp_path / "vol2"), link], entries_per_segment=5)
    store.prepare_volumes()
    return store, old, new


def test_a_volume_pointed_at_a_new_disk_is_repaired_not_written_through_stale_descriptors(disks):
    store, old, new = disks
    store.create_topic("t")
    produce(store, "t", [b"a", b"b"])
    assert read_all(store, "t") == [b"a", b"b"]  # readers keep the old disk's files open too
    point(store.volumes[-1], new)  # a mount over the volume's path does the same
    produce(store, "t", [b"c"])
    assert read_all(store, "t") == [b"a", b"b", b"c"]
    assert read_all(Store([new]), "t") == [b"a", b"b", b"c"]
    assert read_all(Store([old]), "t") == [b"a", b"b"]  # what the old disk held when it was swapped out
    assert_volumes_identical(store)


def test_readers_follow_a_volume_to_its_new_disk(disks):
    store, old, new = disks
    store.create_topic("t")
    produce(store, "t", [b"a"])
    assert read_all(store, "t") == [b"a"]
    os.rmdir(new)
    shutil.copytree(old, new)  # the new disk restored from the old one
    point(store.volumes[-1], new)
    produce(store, "t", [b"b"])
    assert read_all(store, "t") == [b"a", b"b"]
    assert read_all(Store([old]), "t") == [b"a"]


def test_a_watched_commit_is_read_again_from_the_new_disk(disks, monkeypatch):
    from queues.storage import watching
    from queues.storage.watching import CommitRecord

    monkeypatch.setattr(watching, "PATH_CHECK_SECONDS", 0.0)  # at every poll, not once a second
    store, old, new = disks
    store.create_topic("t")
    produce(store, "t", [b"a"])
    record = CommitRecord(list(reversed(store._dirs("t"))))  # the last volume first, as watches read
    assert record.read() == 1 and not record.may_have_changed()
    os.rmdir(new)
    shutil.copytree(old, new)
    point(store.volumes[-1], new)
    produce(store, "t", [b"b"])
    assert record.may_have_changed() and record.read() == 2


def test_a_removed_lock_file_is_replaced_and_still_excludes(store, volumes):
    store.create_topic("t")
    produce(store, "t", [b"a"])
    for volume in volumes:
        shutil.rmtree(os.path.join(volume, ".locks"))
    produce(store, "t", [b"b"])
    for volume in volumes:
        assert len(os.listdir(os.path.join(volume, ".locks"))) == 1
    files = handles.open_topics.cached(store._dirs("t"))
    with files:  # held: another process cannot take the lock file now at the path
        code = f"""
            import fcntl, os, sys
            fd = os.open({os.path.join(volumes[0], ".locks", os.listdir(os.path.join(volumes[0], ".locks"))[0])!r}, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                sys.exit(3)
        """
        assert subprocess.run([sys.executable, "-c", textwrap.dedent(code)]).returncode == 3


def test_descriptors_stay_bounded_across_many_topics(store, monkeypatch):
    monkeypatch.setattr(handles, "open_topics", handles.OpenTopics(capacity=4))
    monkeypatch.setattr("queues.storage.store.open_topics", handles.open_topics)
    before = open_fds()
    for round_ in range(3):
        for i in range(12):
            if round_ == 0:
                store.create_topic(f"t{i}")
            produce(store, f"t{i}", [f"{round_}".encode()])
    assert open_fds() - before <= 4 * 4 * len(store.volumes)
    assert all(read_all(store, f"t{i}") == [b"0", b"1", b"2"] for i in range(12))


def test_a_forked_child_closes_the_descriptors_it_inherited(store):
    store.create_topic("t")
    produce(store, "t", [b"a"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: every kept descriptor of the parent is closed
        try:
            os.write(write, b"1" if not handles.open_topics._files else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    produce(store, "t", [b"b"])
    assert read_all(store, "t") == [b"a", b"b"]


def test_readers_never_serve_a_deleted_topic_through_kept_files(store, volumes):
    store.create_topic("t")
    produce(store, "t", [b"old-0", b"old-1"])
    assert read_all(store, "t") == [b"old-0", b"old-1"]  # the reading thread keeps commit and index open
    other = Store(list(volumes), entries_per_segment=5)
    other.delete_topic("t")
    with pytest.raises(TopicNotFound):
        store.consume("t", 0, 1)
    other.create_topic("t")
    produce(other, "t", [b"new"])
    assert read_all(store, "t") == [b"new"]


def test_readers_see_segments_removed_by_a_truncate(store):
    from queues.storage import MessageIdTruncated

    store.create_topic("t")
    produce(store, "t", [bytes([i]) for i in range(12)])  # segments 0, 5 and 10
    assert store.consume("t", 0, 1).read_all() == b"\x00"
    store.truncate("t", before_id=10)
    with pytest.raises(MessageIdTruncated):
        store.consume("t", 0, 1)
    assert store.consume("t", 10, 5).messages() == [b"\x0a", b"\x0b"]
