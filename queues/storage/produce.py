"""Appending one batch to a topic on every volume.

A batch of up to ``PREREAD_BYTES`` is read and its messages hashed before the topic lock
is taken (``WholeBatch``); a larger one is streamed and hashed under the lock. Under the
lock, with the topic's kept descriptors (``handles.TopicFiles``), the write order is:

1. message bytes, in bounded chunks, to the data files of every volume;
2. ``fsync=batch``: fdatasync those data files;
3. index records to every volume's index files (then fdatasync with ``batch``);
4. the commit record, volume by volume in the given order (fdatasync with ``batch``).

Nothing is visible before step 4, and readers read the last volume's commit, so a
batch becomes visible only once it is on every volume. Any failure before step 4
truncates what was written back to the previous commit and removes new segments.
"""

from __future__ import annotations

import bisect
import os
import time
from itertools import accumulate
from typing import BinaryIO

from .errors import InvalidBody, VolumesOutOfSync
from .handles import TopicFiles
from .layout import TopicDir, fsync_dir, pwrite_all, unlink_quietly
from .records import RECORD_SIZE, Commit, message_hash, message_hashes, pack_index, partial_checksum

CHUNK_BYTES = 4 << 20  # larger batches are written in chunks of this size
PREREAD_BYTES = CHUNK_BYTES  # batches up to this size are read before the topic lock is taken
GROUP_BYTES = 64 << 10  # batches up to this size may be written together with others (Store.produce)


class WholeBatch:
    """A whole (small) batch read from the client and hashed before the topic lock is taken,
    so neither a slow upload nor the hashing holds the lock."""

    __slots__ = ("data", "hashes")

    def __init__(self, body: BinaryIO, sizes: list[int], total: int, check_end: bool):
        """Read ``total`` bytes from ``body``; ``check_end``: make sure it has nothing more."""
        pieces, received = [], 0
        while received < total:  # one read normally returns it all
            piece = body.read(total - received)
            if not piece:
                raise InvalidBody("invalid body: shorter than the sum of X-Sizes")
            pieces.append(piece)
            received += len(piece)
        if check_end and body.read(1):
            raise InvalidBody("invalid body: longer than the sum of X-Sizes")
        self.data = memoryview(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        self.hashes = message_hashes(self.data, sizes)

    @classmethod
    def joined(cls, batches: list[WholeBatch]) -> WholeBatch:
        """``batches`` back to back, as one."""
        if len(batches) == 1:
            return batches[0]
        joined = cls.__new__(cls)
        joined.data = memoryview(b"".join(batch.data for batch in batches))
        joined.hashes = [value for batch in batches for value in batch.hashes]
        return joined


class QueuedBatch:
    """A small batch waiting, in its topic's queue, for whichever thread of the process takes
    the topic lock next to write it (``Store.produce``); that thread sets the outcome."""

    __slots__ = ("sizes", "whole", "first_id", "error")

    def __init__(self, sizes: list[int], whole: WholeBatch):
        self.sizes = sizes
        self.whole = whole
        self.first_id: int | None = None  # once written
        self.error: BaseException | None = None  # once failed

    @property
    def settled(self) -> bool:
        return self.first_id is not None or self.error is not None


class SegmentPart:
    """The messages of a batch that land in one segment."""

    __slots__ = ("first_id", "start_id", "data_offset", "sizes", "data_end", "is_new", "hashes", "fds")

    def __init__(self, first_id: int, start_id: int, data_offset: int, sizes: list[int], total: int, is_new: bool):
        self.first_id = first_id  # id of the segment's first message
        self.start_id = start_id  # id of this part's first message
        self.data_offset = data_offset  # where this part's bytes start in the data file
        self.sizes = sizes
        self.data_end = data_offset + total
        self.is_new = is_new
        self.hashes: list[int] = []  # 64-bit xxh3 of each message (the index keeps the low 32 bits)
        self.fds: list[tuple[int, int]] = []  # (data fd, index fd) per volume


def plan_parts(commit: Commit, sizes: list[int], total: int, entries: int) -> list[SegmentPart]:
    """Split ``sizes`` (adding up to ``total``) at segment boundaries: a segment holds ``entries`` messages."""
    segment, offset, count, next_id = commit.active_segment, commit.data_end, commit.active_count, commit.next_id
    if count + len(sizes) <= entries:  # the usual case: the batch fits the active segment
        return [SegmentPart(segment, next_id, offset, sizes, total, is_new=count == 0 and next_id != 0)]
    parts: list[SegmentPart] = []
    i = 0
    while i < len(sizes):
        if count >= entries:
            segment, offset, count = next_id, 0, 0
        take = sizes[i : i + entries - count]
        size = sum(take)
        parts.append(SegmentPart(segment, next_id, offset, take, size, is_new=count == 0 and next_id != 0))
        offset += size
        count += len(take)
        next_id += len(take)
        i += len(take)
    return parts


class BatchWriter:
    """Writes one planned batch to every volume; ``rollback`` undoes it before the commit.

    The files come from ``files`` (the topic's kept descriptors, whose lock the caller
    holds); the last segment written is handed back to it for the next batch.
    """

    def __init__(self, files: TopicFiles, commit: Commit, parts: list[SegmentPart], durable: bool):
        self.files = files
        self.dirs = files.dirs
        self.commit = commit
        self.parts = parts
        self.durable = durable

    def open(self) -> None:
        """Open the first part's files on every volume (raises VolumesOutOfSync if one cannot
        append there); nothing is written yet, so a failure here needs no rollback."""
        try:
            self._open(self.parts[0])
        except BaseException:
            self._close()
            raise

    def write(self, body: WholeBatch | BinaryIO) -> Commit:
        """Write the batch (after ``open``): ``body`` is all of it or a stream of it; return
        the new commit."""
        try:
            whole = body if isinstance(body, WholeBatch) else None
            position = message = 0
            for part in self.parts:
                if not part.fds:
                    self._open(part)
                if whole is None:
                    self._stream(part, body)
                    continue
                end, following = position + part.data_end - part.data_offset, message + len(part.sizes)
                self._write_whole(part, whole.data[position:end], whole.hashes[message:following])
                position, message = end, following
            if whole is None and body.read(1):
                raise InvalidBody("invalid body: longer than the sum of X-Sizes")
            self._sync(data=True)
            now = time.time_ns()
            for part in self.parts:
                offsets = list(accumulate(part.sizes[:-1], initial=part.data_offset))
                records = pack_index(offsets, part.sizes, part.hashes, now)
                position = (part.start_id - part.first_id) * RECORD_SIZE
                for _, index_fd in part.fds:
                    pwrite_all(index_fd, records, position)
            self._sync(data=False)
        except BaseException:
            self._rollback()
            self._close()
            raise
        last = self.parts[-1]
        self.files.keep_segment(last.first_id, last.fds)
        last.fds = []
        self._close()
        new_commit = Commit(last.start_id + len(last.sizes), last.first_id, last.data_end)
        record = new_commit.pack()
        for volume in range(len(self.dirs)):
            fd = self.files.commit_fd(volume)
            pwrite_all(fd, record, 0)
            if self.durable:
                os.fdatasync(fd)
        return new_commit

    def _open(self, part: SegmentPart) -> None:
        """Open the part's files on every volume (the kept ones, if they are its segment's);
        trim tails a crashed writer left behind."""
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if part.is_new else 0)
        kept = [] if part.is_new else self.files.take_segment(part.first_id)
        part.fds = [(data_fd, index_fd) for data_fd, _, index_fd, _ in kept]  # owned by the part: closed with it
        index_end = (part.start_id - part.first_id) * RECORD_SIZE
        for volume, topic_dir in enumerate(self.dirs):
            if kept:
                data_fd, data_size, index_fd, index_size = kept[volume]
            else:
                try:
                    data_fd = os.open(topic_dir.segment_path(part.first_id, "dat"), flags, 0o644)
                    part.fds.append((data_fd, -1))
                    index_fd = os.open(topic_dir.segment_path(part.first_id, "idx"), flags, 0o644)
                    part.fds[volume] = (data_fd, index_fd)
                except FileNotFoundError:
                    raise VolumesOutOfSync(f"segment {part.first_id} of {topic_dir.topic!r} is missing on a volume") from None
                data_size = index_size = 0 if part.is_new else -1
            if not part.is_new:
                _trim_or_fail(data_fd, data_size, part.data_offset, topic_dir)
                _trim_or_fail(index_fd, index_size, index_end, topic_dir)
            elif self.durable:
                fsync_dir(topic_dir.path)

    def _write_whole(self, part: SegmentPart, data: memoryview, hashes: list[int]) -> None:
        """Write the part's bytes, all in ``data``, to every volume; ``hashes``: its messages'."""
        for data_fd, _ in part.fds:
            pwrite_all(data_fd, data, part.data_offset)
        part.hashes = hashes

    def _stream(self, part: SegmentPart, body: BinaryIO) -> None:
        """Copy the part's bytes from ``body`` to every volume, hashing each message.

        Messages wholly inside a chunk are hashed as in ``_write_whole``; only a message
        that straddles chunks goes through an incremental hasher.
        """
        sizes, hashes, total = part.sizes, part.hashes, part.data_end - part.data_offset
        if total == 0:
            hashes.extend([message_hash(b"")] * len(sizes))
            return
        ends = list(accumulate(sizes))
        message, position, straddling = 0, 0, None
        while position < total:
            chunk = body.read(min(CHUNK_BYTES, total - position))
            if not chunk:
                raise InvalidBody("invalid body: shorter than the sum of X-Sizes")
            for data_fd, _ in part.fds:
                pwrite_all(data_fd, chunk, part.data_offset + position)
            view, chunk_end, start = memoryview(chunk), position + len(chunk), 0  # a chunk starts a message...
            if straddling is not None:  # ...or continues the one the last chunk began
                if ends[message] > chunk_end:
                    straddling.update(view)
                    position = chunk_end
                    continue
                start = ends[message] - position
                straddling.update(view[:start])
                hashes.append(straddling.intdigest())
                straddling, message = None, message + 1
            whole = bisect.bisect_right(ends, chunk_end, message)
            if whole > message:
                hashes += message_hashes(view[start : ends[whole - 1] - position], sizes[message:whole])
            message = whole
            if message < len(ends):
                straddling = partial_checksum(view[ends[message - 1] - position if message else 0 :])
            position = chunk_end

    def _sync(self, data: bool) -> None:
        if self.durable:
            for part in self.parts:
                for data_fd, index_fd in part.fds:
                    os.fdatasync(data_fd if data else index_fd)

    def _rollback(self) -> None:
        for part in self.parts:
            for topic_dir in self.dirs:
                data_path = topic_dir.segment_path(part.first_id, "dat")
                index_path = topic_dir.segment_path(part.first_id, "idx")
                if part.is_new:
                    for path in (data_path, index_path):
                        unlink_quietly(path)
                else:
                    _truncate_quietly(data_path, part.data_offset)
                    _truncate_quietly(index_path, (part.start_id - part.first_id) * RECORD_SIZE)

    def _close(self) -> None:
        for part in self.parts:
            for fds in part.fds:
                for fd in fds:
                    if fd >= 0:
                        os.close(fd)
            part.fds.clear()


def _trim_or_fail(fd: int, size: int, expected: int, topic_dir: TopicDir) -> None:
    """Cut a file of ``size`` (-1: not known yet) back to ``expected``; fail if it is shorter."""
    if size < 0:
        size = os.fstat(fd).st_size
    if size < expected:
        raise VolumesOutOfSync(f"a segment of {topic_dir.topic!r} is shorter than its commit on a volume")
    if size > expected:
        os.ftruncate(fd, expected)


def _truncate_quietly(path: str, size: int) -> None:
    """Shrink ``path`` to ``size``; never grow it (a short file is recovery's business)."""
    try:
        if os.path.getsize(path) > size:
            os.truncate(path, size)
    except FileNotFoundError:
        pass
