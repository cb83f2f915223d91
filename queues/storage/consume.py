"""Reading a range of messages from one volume without taking any lock.

A reader snapshots the volume's commit record, then reads only what it counts;
writers never change bytes a commit already counts, so no lock is needed. The
segment list of a topic is cached per process and trusted only while its last
entry is the commit's active segment (anything else means it went stale).

Degraded reads: the last volume is read; when its copy of a segment is missing or fails
the structural checks (index length, sealed first and last records, sizes against the
data file), the volume before it is read instead, and so on. A message recovery marked
damaged on every volume is never served: a range stops before it, and a range starting
at it raises MessageDamaged.
"""

from __future__ import annotations

import bisect
import io
import os
import threading
from collections import OrderedDict

from .errors import Corruption, MessageDamaged, MessageIdTruncated, NoContent, TopicNotFound
from .handles import Kept, still_kept
from .layout import TopicDir, file_id, first_stored_id, pread_exact, read_commit_fd
from .records import (
    FLAG_DAMAGED,
    FLAGS_BYTE,
    LENGTH_WORD,
    RECORD_SIZE,
    WORDS_PER_RECORD,
    Commit,
    IndexRecord,
    is_sealed,
)
from .verify import any_flagged



class MessageRange:
    """Messages ``first_id .. first_id + len(sizes) - 1``, stored contiguously in ``data_path``.

    It holds the data file open from the read that found it (so a truncate cannot remove
    it in between); ``open`` hands that descriptor over, and a range never opened closes
    it when dropped.
    """

    __slots__ = ("first_id", "sizes", "data_path", "data_offset", "byte_count", "start_time_ns", "end_time_ns", "_fd")

    def __init__(self, first_id: int, sizes: list[int], data_path: str, data_offset: int, byte_count: int,
                 start_time_ns: int, end_time_ns: int, data_fd: int = -1):
        self.first_id = first_id
        self.sizes = sizes
        self.data_path = data_path
        self.data_offset = data_offset
        self.byte_count = byte_count  # sum(sizes)
        self.start_time_ns = start_time_ns
        self.end_time_ns = end_time_ns
        self._fd = data_fd

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)

    def open(self) -> BoundedFile:
        """A file object positioned at the range, reading exactly its bytes."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            fd = os.open(self.data_path, os.O_RDONLY | os.O_CLOEXEC)
        return BoundedFile(fd, self.data_offset, self.byte_count)

    def read_all(self) -> bytes:
        with self.open() as f:
            return f.read()

    def messages(self) -> list[bytes]:
        data, out, at = self.read_all(), [], 0
        for size in self.sizes:
            out.append(data[at : at + size])
            at += size
        return out


class BoundedFile:
    """A read-only file descriptor positioned at ``offset`` whose ``read`` stops after
    ``length`` bytes; it owns the descriptor.

    Its ``fileno()`` is real, so gunicorn sends it with ``sendfile`` from the current
    position, bounded by Content-Length. ``read`` and ``seek`` keep their own position
    (``pread``, no system call to seek): Python's ``socket.sendfile`` seeks after sending
    and, should ``sendfile`` fail at once, reads from where it seeked instead.
    """

    def __init__(self, fd: int, offset: int, length: int):
        self._fd = fd
        try:
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            self.close()
            raise
        self._position = offset
        self._end = offset + length

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._position
        if size is None or size < 0 or size > left:
            size = left
        data = os.pread(self._fd, size, self._position) if size > 0 else b""
        self._position += len(data)
        return data

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise io.UnsupportedOperation("only absolute positions")
        self._position = position
        return position

    def seekable(self) -> bool:
        return False  # Django's FileResponse would otherwise read a file without tell() through to size it

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SegmentCache:
    """Per-process cache of each topic's segment list."""

    def __init__(self) -> None:
        self._segments: dict[str, list[int]] = {}
        self._guard = threading.Lock()

    def segments(self, topic_dir: TopicDir, commit: Commit, refresh: bool = False) -> list[int]:
        key = topic_dir.path
        with self._guard:
            cached = self._segments.get(key)
        if refresh or not cached or cached[-1] != commit.active_segment:
            cached = topic_dir.committed_segments(commit)
            with self._guard:
                self._segments[key] = cached
        return cached


def read_from_volumes(dirs: list[TopicDir], cache: SegmentCache, start: int, limit: int) -> tuple[MessageRange, bool]:
    """``read_range`` on the last volume, else on the one before it, and so on.

    Returns the range and whether it came from another volume than the last. When every
    volume fails, raises the error of the last volume that holds the topic.
    """
    errors: list[Exception] = []
    for topic_dir in reversed(dirs):
        try:
            return read_range(topic_dir, cache, start, limit), topic_dir is not dirs[-1]
        except (TopicNotFound, MessageIdTruncated, Corruption, OSError) as exc:
            if isinstance(exc, MessageDamaged):
                raise
            errors.append(exc)
    raise next((e for e in errors if not isinstance(e, TopicNotFound)), errors[0])


def read_range(topic_dir: TopicDir, cache: SegmentCache, start: int, limit: int, again: bool = True) -> MessageRange:
    """Up to ``limit`` messages from ``start`` (< 0: the last message); never crosses a segment.

    Raises TopicNotFound, NoContent, MessageIdTruncated or Corruption.
    """
    try:
        commit = read_commit_fd(_kept_open(topic_dir.commit_path), topic_dir.topic)
    except FileNotFoundError:
        raise TopicNotFound() from None
    first_wanted = commit.next_id - 1 if start < 0 else start
    if first_wanted < 0 or first_wanted >= commit.next_id:
        raise NoContent("no content")
    for refresh in (False, True):
        found = _locate(topic_dir, cache, commit, first_wanted, refresh)
        if found is None:
            continue  # before the first segment listed: truncated, or a list cached before a re-create
        first, end = found
        count = end - first_wanted if limit <= 0 else min(limit, end - first_wanted)
        try:
            return _read_segment(topic_dir, first, first_wanted, count)
        except FileNotFoundError:
            continue  # removed by a truncate since the list was cached
    if again:  # a truncate, delete or re-create changed the topic under this read: look once more
        return read_range(topic_dir, cache, start, limit, again=False)
    raise MessageIdTruncated(_first_stored(topic_dir, cache, commit))


def _locate(
    topic_dir: TopicDir, cache: SegmentCache, commit: Commit, start: int, refresh: bool
) -> tuple[int, int] | None:
    """The segment holding ``start``: its first id and the id after its last message; None if
    ``start`` comes before every segment listed."""
    if start >= commit.active_segment:
        return commit.active_segment, commit.next_id
    segments = cache.segments(topic_dir, commit, refresh)
    position = bisect.bisect_right(segments, start)
    if position == 0:
        return None
    return segments[position - 1], segments[position]


def _first_stored(topic_dir: TopicDir, cache: SegmentCache, commit: Commit) -> int:
    return first_stored_id(cache.segments(topic_dir, commit, refresh=True), commit)


def _read_segment(topic_dir: TopicDir, first: int, start: int, count: int) -> MessageRange:
    """Raises FileNotFoundError when a truncate or delete removed the segment meanwhile (they remove
    an index before its data), Corruption when the data is missing beside its index."""
    index = _kept_open(topic_dir.segment_path(first, "idx"))
    raw = pread_exact(index, count * RECORD_SIZE, (start - first) * RECORD_SIZE)
    if len(raw) != count * RECORD_SIZE:
        raise Corruption(f"index of {topic_dir.topic!r} segment {first} is shorter than its commit")
    if any_flagged(raw):
        raw = raw[: _undamaged_prefix(topic_dir, raw, start) * RECORD_SIZE]
    if not (is_sealed(raw[:RECORD_SIZE]) and is_sealed(raw[-RECORD_SIZE:])):
        raise Corruption(f"index of {topic_dir.topic!r} segment {first} has a corrupt record")
    sizes = memoryview(raw).cast("I")[LENGTH_WORD::WORDS_PER_RECORD].tolist()
    head, tail = IndexRecord.unpack(raw), IndexRecord.unpack(raw[-RECORD_SIZE:])
    data_path = topic_dir.segment_path(first, "dat")
    try:
        data = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.fstat(index).st_nlink:
            raise  # the segment went while it was read
        raise Corruption(f"data file of {topic_dir.topic!r} segment {first} is missing") from None
    found = MessageRange(start, sizes, data_path, head.offset, tail.end - head.offset, head.timestamp_ns,
                         tail.timestamp_ns, data)  # closes ``data`` if dropped below
    if tail.end - head.offset != sum(sizes) or os.fstat(data).st_size < tail.end:
        raise Corruption(f"data of {topic_dir.topic!r} segment {first} does not match its index")
    return found


class _KeptFiles(threading.local):
    """Commit and index files a thread keeps open between reads, most recent last."""

    def __init__(self) -> None:
        self.files: OrderedDict[str, Kept] = OrderedDict()


_kept = _KeptFiles()
KEPT_PER_THREAD = 16  # files: the commit and index of 8 topics


def _kept_open(path: str) -> int:
    """A read-only descriptor of ``path``, kept open by this thread while its file is the one at
    ``path`` (a deleted or replaced file, or one a new disk hides, is opened anew). Raises
    FileNotFoundError."""
    files = _kept.files
    kept = still_kept(files.pop(path, None), path)
    if kept is None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        kept = (fd, file_id(fd))
        if len(files) >= KEPT_PER_THREAD:
            os.close(files.popitem(last=False)[1][0])
    files[path] = kept  # the most recent, last
    return kept[0]


def _undamaged_prefix(topic_dir: TopicDir, raw: bytes, start: int) -> int:
    """How many records of ``raw`` come before the first one marked damaged."""
    for i, value in enumerate(raw[FLAGS_BYTE::RECORD_SIZE]):
        if value:
            if not is_sealed(raw[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]):
                raise Corruption(f"index of {topic_dir.topic!r} has a corrupt record for message {start + i}")
            if value & FLAG_DAMAGED:
                if i == 0:
                    raise MessageDamaged(topic_dir.topic, start)
                return i
    return len(raw) // RECORD_SIZE
