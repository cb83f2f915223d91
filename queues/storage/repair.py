"""Crash-safe writes used by recovery: a repaired file is never visible half written.

A file is rebuilt under a temporary name (``<name>.<pid>.tmp``) beside it, fsynced, then
renamed over the damaged one and its directory fsynced; ``kill -9`` at any instant leaves
either the old file or the new one, plus at worst a stray temporary file that the next
check removes (no process holds a topic's temp files once its lock is taken). Bytes move
file to file in the kernel (``os.copy_file_range``, else ``os.sendfile``), never through
Python buffers. Small files (index, commit, group) go through
``layout.write_file_atomically(..., durable=True)``, which follows the same steps.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from .errors import Corruption
from .layout import fsync_dir, pwrite_all

TEMP_SUFFIX = ".tmp"
COPY_STEP = 64 << 20  # bytes per kernel copy call (progress is reported between calls)
_ZEROS = bytes(1 << 20)
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}

# (source path or None for zeros, offset, length); the bytes land at the same offset
Run = tuple[str | None, int, int]


def temp_path(path: str) -> str:
    return f"{path}.{os.getpid()}{TEMP_SUFFIX}"


def rebuild_file(path: str, runs: list[Run], on_copy: Callable[[int], None] | None = None) -> int:
    """Write ``runs`` back to back into a new file at ``path``; return the bytes written."""
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    written = 0
    try:
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
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
    return written


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
