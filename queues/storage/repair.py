"""Crash-safe writes used by recovery: a repaired file is never visible half written.

Files are rebuilt under temporary names (``<name>.<pid>.tmp``) beside the damaged ones,
made durable, then renamed over them and their directories fsynced; ``kill -9`` at any
instant leaves either the old file or the new one, plus at worst stray temporary files
that the next check removes (no process holds a topic's temp files once its lock is
taken). Bytes move file to file in the kernel (``os.copy_file_range``, else
``os.sendfile``), never through Python buffers.

Durability is batched (``StagedFiles``): one ``syncfs`` per filesystem for a batch of
files costs one journal commit where an fsync per file costs one each, which is what
lets a repair copy as fast as ``cp`` followed by ``sync``. Where ``syncfs`` is missing,
every file is fsynced.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

from .errors import Corruption
from .layout import fsync_dir, pwrite_all, temp_path, unlink_quietly

COPY_STEP = 64 << 20  # bytes per kernel copy call (progress is reported between calls)
BATCH_BYTES = 256 << 20  # staged bytes before a batch is made durable and renamed
_ZEROS = bytes(1 << 20)
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}
_libc = ctypes.CDLL(None, use_errno=True)

# (source path or None for zeros, offset, length); the bytes land at the same offset
Run = tuple[str | None, int, int]


class StagedFiles:
    """New versions of files, written under temporary names until ``publish``."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, str]] = []  # (temporary, final) paths
        self.bytes = 0

    def copy(self, path: str, runs: list[Run], on_copy: Callable[[int], None] | None = None) -> int:
        """Stage ``path`` made of ``runs`` back to back; return the bytes written."""
        written = 0
        with self._create(path) as fd:
            sources: dict[str, int] = {}
            try:
                for source, offset, length in runs:
                    if source is None:
                        _write_zeros(fd, offset, length)
                    else:
                        if source not in sources:
                            sources[source] = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
                        copy_range(sources[source], fd, offset, length, on_copy)
                    written += length
            finally:
                for source_fd in sources.values():
                    os.close(source_fd)
        self.bytes += written
        return written

    def write(self, path: str, data: bytes) -> int:
        with self._create(path) as fd:
            pwrite_all(fd, data, 0)
        self.bytes += len(data)
        return len(data)

    def publish(self) -> None:
        """Make every staged file durable, then rename them into place."""
        if not self._staged:
            return
        _make_durable([tmp for tmp, _ in self._staged])
        for tmp, path in self._staged:
            os.replace(tmp, path)
        for folder in {os.path.dirname(path) for _, path in self._staged}:
            fsync_dir(folder)
        self._staged.clear()
        self.bytes = 0

    def discard(self) -> None:
        for tmp, _ in self._staged:
            unlink_quietly(tmp)
        self._staged.clear()

    def _create(self, path: str) -> _TempFile:
        tmp = temp_path(path)
        self._staged.append((tmp, path))
        return _TempFile(tmp)


class _TempFile:
    """An open temporary file that is removed again if writing it fails."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, kind: type | None, *exc: object) -> None:
        os.close(self.fd)
        if kind is not None:
            unlink_quietly(self.path)


def _make_durable(paths: list[str]) -> None:
    """syncfs once per filesystem holding ``paths``; fsync each file where that fails."""
    devices: dict[int, str] = {}
    for path in paths:
        devices.setdefault(os.stat(path).st_dev, path)
    synced = set()
    for device, path in devices.items():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if getattr(_libc, "syncfs", None) is not None and _libc.syncfs(fd) == 0:
                synced.add(device)
        finally:
            os.close(fd)
    for path in paths:
        if os.stat(path).st_dev not in synced:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def trim_file(path: str, size: int) -> None:
    """Cut the garbage a crashed writer left past ``size``; rerunning after a crash is harmless."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_range(src: int, dst: int, offset: int, length: int, on_copy: Callable[[int], None] | None = None) -> None:
    """Copy ``length`` bytes at ``offset`` of ``src`` to the same offset of ``dst`` in the kernel."""
    end = offset + length
    while offset < end:
        step = min(COPY_STEP, end - offset)
        try:
            copied = os.copy_file_range(src, dst, step, offset, offset)
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            copied = _copy_fallback(src, dst, offset, step)
        if copied == 0:
            raise Corruption("a source file shrank while it was being copied")
        offset += copied
        if on_copy is not None:
            on_copy(copied)


def _copy_fallback(src: int, dst: int, offset: int, length: int) -> int:
    """``sendfile`` (the file to file copy older kernels allow), else read and write."""
    os.lseek(dst, offset, os.SEEK_SET)
    try:
        return os.sendfile(dst, src, offset, length)
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise
    data = os.pread(src, min(length, 1 << 20), offset)
    pwrite_all(dst, data, offset)
    return len(data)


def _write_zeros(fd: int, offset: int, length: int) -> None:
    while length:
        chunk = _ZEROS[: min(len(_ZEROS), length)]
        pwrite_all(fd, chunk, offset)
        offset += len(chunk)
        length -= len(chunk)
