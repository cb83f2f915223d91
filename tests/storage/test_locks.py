"""The topic lock: held against other processes on the lock file at its path, even when that
file is removed while a lock is being taken."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from queues.storage import locks


def locked_elsewhere(path: str) -> bool:
    """Whether another process finds the file at ``path`` flocked."""
    code = f"""
        import fcntl, os, sys
        fd = os.open({path!r}, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(3)
    """
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)]).returncode == 3


def test_a_lock_on_a_removed_lock_file_is_taken_on_the_file_now_at_its_path(tmp_path):
    path = str(tmp_path / "t.lock")
    stale = locks.open_lock_file(path)
    kept = (stale, locks.file_id(stale))
    os.unlink(path)  # say, the volume's .locks was wiped after the file was opened
    fd, _ = locks.flocked(path, kept)
    try:
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
        assert locked_elsewhere(path)
    finally:
        os.close(fd)


def test_topic_lock_holds_the_lock_file_at_its_path_when_it_was_removed_before_the_flock(volumes, monkeypatch):
    opened = []

    def open_then_lose_it(path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if path not in opened:
            os.unlink(path)  # removed between the open and the flock
        opened.append(path)
        return fd

    monkeypatch.setattr(locks, "open_lock_file", open_then_lose_it)
    for volume in volumes:
        os.makedirs(os.path.join(volume, locks.LOCK_DIR), exist_ok=True)
    with locks.topic_lock(volumes, "t"):
        assert all(locked_elsewhere(path) for path in locks.lock_paths(volumes, "t"))
    assert not any(locked_elsewhere(path) for path in locks.lock_paths(volumes, "t"))
