"""Per-topic write lock, held by every operation that changes a topic.

Two layers, both needed: a ``threading.Lock`` because ``flock`` does not exclude
threads of one process sharing a lock file, and an ``flock`` on a lock file in every
volume's ``.locks`` directory so gunicorn workers and separate servers sharing the
volumes exclude each other. Lock files live outside topic directories and are never
deleted, so delete and re-create of a topic can never split the lock. Volumes are
locked in sorted order of their real paths so servers listing them in different
orders cannot deadlock.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import threading

from .layout import FileId, file_id, stat_if_same

LOCK_DIR = ".locks"

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def thread_lock(topic: str) -> threading.Lock:
    """The one ``threading.Lock`` of ``topic`` in this process."""
    with _thread_locks_guard:
        return _thread_locks.setdefault(topic, threading.Lock())


@functools.lru_cache(maxsize=4096)
def lock_file_name(topic: str) -> str:
    return hashlib.sha1(topic.encode("utf-8", "surrogatepass")).hexdigest() + ".lock"


def lock_paths(volume_roots: list[str], topic: str) -> list[str]:
    """The topic's lock file on every volume, in the order they are taken."""
    name = lock_file_name(topic)
    return [f"{root}/{LOCK_DIR}/{name}" for root in _lock_order(tuple(volume_roots))]


class topic_lock:  # noqa: N801 - used like a function: ``with topic_lock(volumes, topic):``
    """Hold the topic's lock in this process and on every volume (a plain class rather
    than a generator context manager: it is cheap to take)."""

    def __init__(self, volume_roots: list[str], topic: str):
        self._paths = lock_paths(volume_roots, topic)
        self._thread_lock = thread_lock(topic)
        self._fds: list[int] = []

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            for path in self._paths:
                self._fds.append(flocked(path)[0])
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for fd in reversed(self._fds):
            os.close(fd)  # closing the descriptor releases its flock
        self._fds.clear()
        self._thread_lock.release()


def flocked(path: str, kept: tuple[int, FileId] | None = None) -> tuple[int, FileId]:
    """The lock file at ``path`` flocked, as a descriptor and its file's id: ``kept`` (an earlier
    answer) or the file opened anew, whichever is still the file at ``path`` once locked. A lock
    taken on a lock file removed meanwhile (its volume wiped), or hidden by a new disk mounted
    there, would exclude nobody. Takes ``kept`` over: on failure it is closed."""
    fd, locked_id = kept or (-1, None)
    while True:
        if fd < 0:
            fd, locked_id = open_lock_file(path), None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked_id = locked_id or file_id(fd)
            if stat_if_same(path, locked_id) is not None:
                return fd, locked_id
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # lock the file now at its path instead
        fd = -1


def open_lock_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:  # the volume lost its .locks directory
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@functools.lru_cache(maxsize=64)
def _lock_order(volume_roots: tuple[str, ...]) -> list[str]:
    """One of ``volume_roots`` per directory they lead to (two locks on one file would deadlock),
    in the order of those directories' real paths. The roots stay as given: a symlink pointed
    at a new disk later leads to that disk's lock files."""
    by_real_path: dict[str, str] = {}
    for root in volume_roots:
        by_real_path.setdefault(os.path.realpath(root), root)
    return [by_real_path[real] for real in sorted(by_real_path)]
