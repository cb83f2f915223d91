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
                self._fds.append(flocked(-1, path))
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for fd in reversed(self._fds):
            os.close(fd)  # closing the descriptor releases its flock
        self._fds.clear()
        self._thread_lock.release()


def flocked(fd: int, path: str) -> int:
    """``fd`` (or, if -1, ``path`` opened anew) flocked, and still the file at ``path``: a lock
    taken on a lock file removed meanwhile (its volume wiped) would exclude nobody. Takes
    ``fd`` over: on failure it is closed."""
    while True:
        if fd < 0:
            fd = open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return fd
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
    return sorted({os.path.realpath(root) for root in volume_roots})
