"""A topic's files kept open between the produces of this process.

Opening, checking and closing the lock, commit and segment files of a topic on every
volume costs more than appending a small batch, so a process keeps them open for the
topics it appended to last (within a quarter of its descriptor limit). A kept lock or commit
descriptor is trusted only while its file is still the one at its path (``still_kept``), a
segment's while its file has a name: a topic deleted, re-created or repaired by any process,
a lock file or a whole volume wiped, a new disk mounted or a symlink pointed where a volume
was, all make it open the path again. The descriptors are used only under the topic's lock,
which ``TopicFiles`` takes itself. A forked child closes what it inherited: shared
descriptors would share their flocks with the parent.
"""

from __future__ import annotations

import fcntl
import os
import resource
import threading
import weakref
from collections import OrderedDict

from .layout import FileId, TopicDir, file_id, read_commit_fd, stat_if_same
from .locks import flocked, lock_paths, thread_lock
from .records import Commit

DESCRIPTORS_PER_VOLUME = 4  # lock, commit, data and index file of a topic
Kept = tuple[int, FileId]  # a descriptor kept open, and the id of its file when it was opened


def descriptor_budget() -> int:
    """How many descriptors kept files may hold: a quarter of what the process may open, at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1024 if soft == resource.RLIM_INFINITY else max(16, min(1024, soft // 4))


class TopicFiles:
    """One topic's lock, commit and active segment descriptors on every volume.

    ``with files:`` holds the topic lock (this process's thread lock, then an flock on
    every volume's lock file); every other method needs it held, but for the queue of small
    batches waiting to be written together (``queue``, ``take_queue``: see ``Store.produce``).
    """

    __slots__ = ("dirs", "topic", "_lock_paths", "_locks", "_thread_lock", "_commits", "_segment", "_segment_fds",
                 "evicted", "_queue", "_queue_guard")

    def __init__(self, dirs: tuple[TopicDir, ...]):
        self.dirs = dirs
        self.topic = dirs[0].topic
        self._lock_paths = lock_paths([d.root for d in dirs], self.topic)
        self._locks: list[Kept | None] = [None] * len(self._lock_paths)
        self._thread_lock = thread_lock(self.topic)
        self._commits: list[Kept | None] = [None] * len(dirs)
        self._segment = -1  # first id of the segment whose files are open
        self._segment_fds: list[tuple[int, int]] = []  # (data fd, index fd) per volume
        self.evicted = False  # dropped from the cache: close everything on release
        self._queue: list = []  # small batches of this process waiting for the topic lock
        self._queue_guard = threading.Lock()

    def __enter__(self) -> TopicFiles:
        self.take_turn()
        try:
            self.lock_volumes()
        except BaseException:
            self.end_turn()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_turn()

    def take_turn(self) -> None:
        """The topic's thread lock: this process's other threads wait (``end_turn`` ends it)."""
        self._thread_lock.acquire()

    def lock_volumes(self) -> None:
        """With the turn taken: the flock on every volume, which other processes wait for."""
        for i, path in enumerate(self._lock_paths):
            kept, self._locks[i] = self._locks[i], None  # flocked owns it until it returns one
            self._locks[i] = flocked(path, kept)

    def end_turn(self, volumes_locked: bool = True) -> None:
        """Release the flocks (if taken) and the thread lock."""
        try:
            for kept in self._locks if volumes_locked else ():
                if kept is not None:
                    fcntl.flock(kept[0], fcntl.LOCK_UN)
            if self.evicted:
                self.close()
        finally:
            self._thread_lock.release()

    def queue(self, batch) -> None:
        with self._queue_guard:
            self._queue.append(batch)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def take_queue(self) -> list:
        """The queued batches, in the order they came; the queue is left empty."""
        with self._queue_guard:
            batches, self._queue = self._queue, []
        return batches

    def read_commits(self) -> list[Commit | None]:
        """Each volume's commit record (None where the topic is missing). Raises Corruption."""
        commits = []
        for i, topic_dir in enumerate(self.dirs):
            kept = self._commits[i] = still_kept(self._commits[i], topic_dir.commit_path)
            if kept is None:
                self.keep_segment(-1, [])  # the topic's files were replaced, maybe the segment's too
                try:
                    fd = os.open(topic_dir.commit_path, os.O_RDWR | os.O_CLOEXEC)
                    kept = self._commits[i] = (fd, file_id(fd))
                except FileNotFoundError:
                    pass
            commits.append(read_commit_fd(kept[0], self.topic) if kept else None)
        return commits

    def commit_fd(self, volume: int) -> int:
        """The commit file of the ``volume``-th directory, as ``read_commits`` found it."""
        return self._commits[volume][0]

    def take_segment(self, first_id: int) -> list[tuple[int, int, int, int]]:
        """The kept files of segment ``first_id`` on every volume as (data fd, data size,
        index fd, index size), handed over to the caller (who closes them or gives them
        back with ``keep_segment``); [] if they are another segment's or one lost its name."""
        fds, self._segment_fds = self._segment_fds, []
        taken = []
        if self._segment == first_id:
            for data_fd, index_fd in fds:
                data, index = os.fstat(data_fd), os.fstat(index_fd)
                if not (data.st_nlink and index.st_nlink):
                    break
                taken.append((data_fd, data.st_size, index_fd, index.st_size))
            else:
                return taken
        _close_all(fds)
        return []

    def keep_segment(self, first_id: int, fds: list[tuple[int, int]]) -> None:
        _close_all(self._segment_fds)
        self._segment, self._segment_fds = first_id, fds

    def close(self) -> None:
        """Close every kept descriptor (the lock, if held, stays held by the thread lock only)."""
        _close_all(self._segment_fds)
        self._segment_fds = []
        for kept_files in (self._locks, self._commits):
            for i, kept in enumerate(kept_files):
                if kept is not None:
                    os.close(kept[0])
                kept_files[i] = None


class OpenTopics:
    """The ``TopicFiles`` of the topics this process appended to last: at most ``capacity``
    topics, by default as many as ``descriptor_budget`` allows."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self._files: OrderedDict[tuple[TopicDir, ...], TopicFiles] = OrderedDict()
        self._guard = threading.Lock()
        _caches.add(self)

    def cached(self, dirs: tuple[TopicDir, ...]) -> TopicFiles | None:
        with self._guard:
            files = self._files.get(dirs)
            if files is not None:
                self._files.move_to_end(dirs)
            return files

    def get(self, dirs: tuple[TopicDir, ...]) -> TopicFiles:
        with self._guard:
            files = self._files.get(dirs)
            if files is not None:
                self._files.move_to_end(dirs)
                return files
            files = self._files[dirs] = TopicFiles(dirs)
            capacity = self.capacity or max(1, descriptor_budget() // (DESCRIPTORS_PER_VOLUME * len(dirs)))
            evicted = [self._files.popitem(last=False)[1] for _ in range(len(self._files) - capacity)]
        for old in evicted:
            old.evicted = True
            with old._thread_lock:  # not in use any more: whoever still holds it closes it on release
                old.close()
        return files

    def forget(self, dirs: tuple[TopicDir, ...]) -> None:
        """Drop a topic's descriptors (before a repair replaces its files)."""
        with self._guard:
            files = self._files.pop(dirs, None)
        if files is not None:
            files.evicted = True

    def drop_inherited(self) -> None:
        """In a forked child: close the parent's descriptors without touching its locks."""
        for files in self._files.values():
            files.close()
        self._files.clear()
        self._guard = threading.Lock()


_caches: weakref.WeakSet[OpenTopics] = weakref.WeakSet()
open_topics = OpenTopics()  # the process's, shared by every Store


def _drop_inherited() -> None:
    for cache in list(_caches):
        cache.drop_inherited()


os.register_at_fork(after_in_child=_drop_inherited)


def still_kept(kept: Kept | None, path: str) -> Kept | None:
    """``kept`` if its file is still the one at ``path`` (``layout.stat_if_same``), else None
    (closed): a stat of the path, no more than checking the descriptor would cost."""
    if kept is not None and stat_if_same(path, kept[1]) is None:
        os.close(kept[0])
        return None
    return kept


def _close_all(fds: list[tuple[int, int]]) -> None:
    for pair in fds:
        for fd in pair:
            if fd >= 0:
                os.close(fd)
