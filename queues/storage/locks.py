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

import contextlib
import fcntl
import functools
import hashlib
import os
import threading
from collections.abc import Iterator

LOCK_DIR = ".locks"

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


def lock_file_name(topic: str) -> str:
    return hashlib.sha1(topic.encode("utf-8", "surrogatepass")).hexdigest() + ".lock"


@contextlib.contextmanager
def topic_lock(volume_roots: list[str], topic: str) -> Iterator[None]:
    """Hold the topic's lock in this process and on every volume."""
    name = lock_file_name(topic)
    with _thread_lock(topic), contextlib.ExitStack() as stack:
        for root in _lock_order(tuple(volume_roots)):
            lock_dir = f"{root}/{LOCK_DIR}"
            try:
                fd = os.open(f"{lock_dir}/{name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # the volume lost its .locks directory
                os.makedirs(lock_dir, exist_ok=True)
                fd = os.open(f"{lock_dir}/{name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


@functools.lru_cache(maxsize=64)
def _lock_order(volume_roots: tuple[str, ...]) -> list[str]:
    return sorted({os.path.realpath(root) for root in volume_roots})
