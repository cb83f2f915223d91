"""The queue store: topics replicated over an ordered list of volumes.

Writes go to every volume in the given order under the topic lock; reads come
from the last volume and take no lock. Every setting is a constructor argument; the
only state shared by the stores of a process is the cache of open topic files
(``handles.open_topics``), bounded by the process's descriptor limit.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from array import array
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Literal

import re2

from . import layout, recovery
from .consume import MessageRange, SegmentCache, read_from_volumes
from .errors import (
    BatchTooLarge,
    Corruption,
    GroupOffsetCorrupt,
    InvalidBody,
    InvalidRegex,
    InvalidSizes,
    MessageIdTruncated,
    TopicExists,
    TopicNotFound,
    VolumeError,
    VolumesOutOfSync,
)
from .handles import TopicFiles, open_topics
from .layout import TopicDir, first_stored_id, overlapping_volumes, pread_file, unlink_quietly, write_file_atomically
from .locks import LOCK_DIR, topic_lock
from .names import group_file, normalize_topic
from .produce import GROUP_BYTES, PREREAD_BYTES, BatchWriter, QueuedBatch, WholeBatch, plan_parts
from .records import RECORD_SIZE, Commit, IndexRecord
from .report import Report

FsyncPolicy = Literal["never", "batch"]
# A segment's index goes before its data: a reader that finds the data gone while the index it
# read from is still there knows the data file is lost, not removed under it.
SEGMENT_REMOVAL_ORDER = ("idx", "dat")
MAX_MESSAGE_BYTES = (1 << 32) - 1
DEFAULT_MAX_BATCH_BYTES = 1 << 30
_TOPIC_DIRS_KEPT = 4096
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offsets:
    min_offset: int  # first id still stored
    max_offset: int  # the next id to be written


class Store:
    """Topics on ``volumes``; see the package docstring for the guarantees."""

    def __init__(
        self,
        volumes: list[str],
        entries_per_segment: int = 5000,
        fsync: FsyncPolicy = "never",
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ):
        if not volumes:
            raise ValueError("at least one volume is required")
        if entries_per_segment < 1:
            raise ValueError("entries_per_segment must be at least 1")
        if fsync not in ("never", "batch"):
            raise ValueError("fsync must be 'never' or 'batch'")
        self.volumes = [os.path.abspath(v) for v in volumes]
        self.entries_per_segment = entries_per_segment
        self.fsync = fsync
        self.max_batch_bytes = max_batch_bytes
        self._segment_cache = SegmentCache()
        self._topic_dirs: dict[str, tuple[TopicDir, ...]] = {}
        self.degraded_reads = 0  # consumes served from another volume than the last (see consume.py)
        self._degraded_guard = threading.Lock()

    @property
    def durable(self) -> bool:
        return self.fsync == "batch"

    def prepare_volumes(self) -> None:
        """Create missing volume directories; raise VolumeError if one is unusable, or if two
        would share files (each volume must hold its own copy)."""
        self._refuse_overlapping_volumes()
        for volume in self.volumes:
            if os.path.exists(volume) and not os.path.isdir(volume):
                raise VolumeError(f"volume {volume} is not a directory")
            try:
                os.makedirs(os.path.join(volume, LOCK_DIR), exist_ok=True)
            except OSError as exc:
                problem = "is not writable" if os.path.isdir(volume) else "cannot be created"
                raise VolumeError(f"volume {volume} {problem}: {exc.strerror}") from None
            if not os.access(volume, os.W_OK | os.X_OK):
                raise VolumeError(f"volume {volume} is not writable")

    def _refuse_overlapping_volumes(self) -> None:
        for _, problem in overlapping_volumes(self.volumes):
            raise VolumeError(problem)

    def _dirs(self, topic: str) -> tuple[TopicDir, ...]:
        dirs = self._topic_dirs.get(topic)
        if dirs is None:
            if len(self._topic_dirs) >= _TOPIC_DIRS_KEPT:
                self._topic_dirs.clear()
            dirs = self._topic_dirs[topic] = tuple(TopicDir(volume, topic) for volume in self.volumes)
        return dirs

    def _existing_topic(self, name: str) -> str:
        """The normalised name of a topic stored on some volume; checked before locking
        so requests for missing topics leave no lock file behind."""
        topic = normalize_topic(name)
        if not any(d.exists() for d in self._dirs(topic)):
            raise TopicNotFound()
        return topic

    # topics

    def create_topic(self, topic: str) -> None:
        """Create ``topic`` on every volume, or on none (an I/O error undoes it). Raises
        InvalidTopic, TopicExists."""
        topic = normalize_topic(topic)
        with topic_lock(self.volumes, topic):
            dirs = self._dirs(topic)
            if any(d.exists() for d in dirs):
                raise TopicExists("topic already exists")
            try:
                for topic_dir in dirs:
                    _remove_topic_files(topic_dir)  # what a delete cut short left: segments, consumer groups
                    os.makedirs(topic_dir.path, exist_ok=True)
                    for suffix in ("dat", "idx"):
                        open(topic_dir.segment_path(0, suffix), "wb").close()
                    write_file_atomically(topic_dir.commit_path, Commit().pack(), self.durable)
            except BaseException:
                for topic_dir in dirs:  # on some volumes only, it would look created but fail every write
                    _remove_topic_files(topic_dir)
                raise

    def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` from every volume (nested topics stay); a missing one is no error.
        Raises InvalidTopic."""
        topic = normalize_topic(topic)
        if not any(os.path.isdir(d.path) for d in self._dirs(topic)):  # no lock file for a name never created
            return  # (a directory without a commit is a delete cut short: it is finished below)
        with topic_lock(self.volumes, topic):
            for topic_dir in self._dirs(topic):
                _remove_topic_files(topic_dir)

    def list_topics(
        self, regex: str | None = None, prefix: str = "", suffix: str = "", *, ignore_case: bool = False
    ) -> list[str]:
        """Sorted topic names on any volume (a lost volume hides none), those starting with
        ``prefix``, ending with ``suffix`` and, with ``regex``, that it matches anywhere in
        (regardless of case with ``ignore_case``). Raises InvalidRegex."""
        pattern = compile_regex(regex, ignore_case) if regex else None
        topics = {t for volume in self.volumes for t in layout.walk_topics(volume)}
        return sorted(
            t for t in topics if t.startswith(prefix) and t.endswith(suffix) and (pattern is None or pattern.search(t))
        )

    def offsets(self, topic: str) -> Offsets:
        """First stored id and next id of ``topic``, from the last volume holding it intact.
        Raises InvalidTopic, TopicNotFound."""
        for topic_dir in reversed(self._dirs(normalize_topic(topic))):
            try:
                commit = topic_dir.read_commit()
            except Corruption:
                continue
            if commit is not None:
                return Offsets(first_stored_id(topic_dir.committed_segments(commit), commit), commit.next_id)
        raise TopicNotFound()

    # messages

    def produce(self, topic: str, sizes: list[int], body: BinaryIO, declared_length: int | None = None) -> int:
        """Append one batch; return the id of its first message.

        ``body`` yields exactly ``sum(sizes)`` bytes; a ``declared_length`` (the request's
        Content-Length) that differs is refused before anything is read. On return the batch
        is on every volume (and durable with ``fsync='batch'``). Raises InvalidTopic,
        InvalidSizes, BatchTooLarge, InvalidBody, TopicNotFound, VolumesOutOfSync, OSError.

        A batch of up to ``GROUP_BYTES`` is queued, then written by the first thread of this
        process to get the topic lock, together with every batch queued meanwhile: one write,
        one commit (and one fdatasync) for them all, and the threads that queued them wait for
        the lock only to find their batch written. They succeed or fail together.
        """
        total = self.check_sizes(sizes)
        if declared_length is not None and declared_length != total:
            raise InvalidBody(f"invalid body: {declared_length} bytes sent, X-Sizes adds up to {total}")
        dirs = self._dirs(normalize_topic(topic))
        files = open_topics.cached(dirs)
        if files is None:  # checked before the lock, so a missing topic leaves no lock file
            self._existing_topic(dirs[0].topic)
            files = open_topics.get(dirs)
        source: WholeBatch | BinaryIO = body  # a large batch is streamed under the lock
        if total <= PREREAD_BYTES:
            source = WholeBatch(body, sizes, total, check_end=declared_length is None)
            if total <= GROUP_BYTES:
                return self._produce_queued(files, QueuedBatch(sizes, source))
        with files:
            writer = self._open_writer(files, sizes, total)
            writer.write(source)
            return writer.commit.next_id

    def _produce_queued(self, files: TopicFiles, batch: QueuedBatch) -> int:
        files.queue(batch)
        files.take_turn()
        writing = not batch.settled  # else the thread before wrote it
        try:
            if writing:
                self._write_queued(files, files.take_queue())
        finally:
            files.end_turn(volumes_locked=writing)
        if batch.error is not None:
            raise batch.error  # in every thread whose batch was in the failed write
        return batch.first_id

    def _write_queued(self, files: TopicFiles, batches: list[QueuedBatch]) -> None:
        """Write ``batches`` as one, with the turn taken; settle each."""
        try:
            files.lock_volumes()
            whole = WholeBatch.joined([batch.whole for batch in batches])
            writer = self._open_writer(files, [size for batch in batches for size in batch.sizes], len(whole.data))
            writer.write(whole)
        except BaseException as exc:
            for batch in batches:
                batch.error = exc
            return
        first_id = writer.commit.next_id
        for batch in batches:
            batch.first_id, first_id = first_id, first_id + len(batch.sizes)

    def check_sizes(self, sizes: list[int]) -> int:
        """The batch's total bytes; raise InvalidSizes / BatchTooLarge unless ``sizes`` is acceptable."""
        if not sizes or not _fit_32_bits(sizes):
            raise InvalidSizes("invalid header: X-Sizes")
        total = sum(sizes)
        if total > self.max_batch_bytes:
            raise BatchTooLarge(f"batch larger than {self.max_batch_bytes} bytes")
        return total

    def consume(self, topic: str, start: int, limit: int) -> MessageRange:
        """Up to ``limit`` (<= 0: no limit) messages from id ``start`` (< 0: the last one).

        May return fewer than asked, stopping at a segment end. Raises InvalidTopic,
        TopicNotFound, NoContent, MessageIdTruncated, Corruption.
        """
        return self._read(self._dirs(normalize_topic(topic)), start, limit)

    def _read(self, dirs: list[TopicDir], start: int, limit: int) -> MessageRange:
        result, degraded = read_from_volumes(dirs, self._segment_cache, start, limit)
        if degraded:
            with self._degraded_guard:
                self.degraded_reads += 1
            logger.warning(
                "degraded read: topic %r from id %d served from %s (the last volume's copy is missing or damaged)",
                dirs[-1].topic, start, os.path.dirname(result.data_path),
            )
        return result

    def consume_group(self, topic: str, group: str, start: int, limit: int, advance: bool = True) -> MessageRange:
        """Consume for a consumer group: from ``start`` or, if negative, the group's next id (or,
        once a truncate removed that, the first message still stored).

        The group's offset moves past what is returned (at-most-once per group), unless
        ``advance`` is false (a look that delivers nothing, such as HTTP's HEAD). Raises
        InvalidTopic, InvalidGroup, TopicNotFound, NoContent, MessageIdTruncated (with ``start``),
        GroupOffsetCorrupt (recovery resets such a group), Corruption.
        """
        topic, kept_in = self._existing_topic(topic), group_file(group)
        with topic_lock(self.volumes, topic):
            dirs = self._dirs(topic)
            if not any(d.exists() for d in dirs):
                raise TopicNotFound()
            if start >= 0:
                result = self._read(dirs, start, limit)
            else:
                start = _group_offset(dirs, kept_in)
                try:
                    result = self._read(dirs, start, limit)
                except MessageIdTruncated as exc:  # the group fell behind a truncate: go on from what is left
                    result = self._read(dirs, exc.first_id, limit)
            for topic_dir in dirs if advance else ():
                topic_dir.write_group(kept_in, result.first_id + len(result.sizes), self.durable)
            return result

    def truncate(self, topic: str, before_id: int | None = None, before: datetime | None = None) -> Offsets:
        """Remove whole segments whose messages all precede ``before_id`` / time ``before``.

        The active segment is never removed; a negative ``before_id`` removes every other one
        (haraqa's rule). Raises InvalidTopic, TopicNotFound, and VolumesOutOfSync or Corruption
        when the volumes cannot be reconciled first.
        """
        topic = self._existing_topic(topic)
        with topic_lock(self.volumes, topic):
            dirs = self._dirs(topic)
            read_dir = dirs[-1]
            commit = self._reconciled_commit(dirs)  # repairs a volume that lost the topic first
            if before_id is not None and before_id < 0:
                before_id = commit.next_id
            segments = read_dir.committed_segments(commit)
            before_ns = before.timestamp() * 1e9 if before is not None else None
            removed = 0
            for first, following in zip(segments, segments[1:]):
                by_id = before_id is not None and following <= before_id
                by_time = before_ns is not None and _last_timestamp(read_dir, first, following) < before_ns
                if not (by_id or by_time):
                    break
                for topic_dir in dirs:
                    for suffix in SEGMENT_REMOVAL_ORDER:
                        unlink_quietly(topic_dir.segment_path(first, suffix))
                removed += 1
            return Offsets(first_stored_id(segments[removed:], commit), commit.next_id)

    # consistency between volumes

    def check(
        self, fix: bool = False, topics: list[str] | None = None, progress: recovery.Progress | None = None,
        deep: bool = True,
    ) -> Report:
        """Verify every topic on every volume; repair with ``fix``. See ``recovery.check``.
        Raises VolumeError if two volumes would share files."""
        self._refuse_overlapping_volumes()
        return recovery.check(self, fix=fix, topics=topics, progress=progress, deep=deep)

    def _open_writer(self, files: TopicFiles, sizes: list[int], total: int) -> BatchWriter:
        """A writer for the batch with its current segment open on every volume (which also
        proves every volume can append); a topic missing or damaged on a volume is repaired
        first, under the topic lock the caller holds."""
        for repaired in (False, True):
            try:
                commit = self._agreed_commit(files.dirs, files.read_commits(), check_active=False)
                writer = BatchWriter(files, commit, plan_parts(commit, sizes, total, self.entries_per_segment), self.durable)
                writer.open()
                return writer
            except (VolumesOutOfSync, Corruption, FileNotFoundError):
                if repaired:
                    raise
                open_topics.forget(files.dirs)  # the repair may replace any of its files
                recovery.repair_topic(self.volumes, files.topic)
        raise AssertionError("unreachable")

    def _reconciled_commit(self, dirs: list[TopicDir]) -> Commit:
        """The commit every volume agrees on; a topic missing or damaged on a volume is
        repaired first, under the topic lock the caller holds."""
        try:
            return self._agreed_commit(dirs, [d.read_commit() for d in dirs])
        except (VolumesOutOfSync, Corruption, FileNotFoundError):
            recovery.repair_topic(self.volumes, dirs[0].topic)
            return self._agreed_commit(dirs, [d.read_commit() for d in dirs])

    def _agreed_commit(self, dirs: tuple[TopicDir, ...], commits: list[Commit | None], check_active: bool = True) -> Commit:
        """The commit every volume agrees on (``commits``: each volume's), rolling forward a
        commit a crash left half written."""
        newest = commits[0]
        if newest is None or commits.count(newest) < len(commits):
            newest = self._rolled_forward(dirs, commits)
        if check_active and not recovery.active_segment_intact(dirs, newest):
            raise VolumesOutOfSync("the active segment is missing or short on a volume")
        return newest

    def _rolled_forward(self, dirs: tuple[TopicDir, ...], commits: list[Commit | None]) -> Commit:
        """The newest of volumes' disagreeing commits, written to the others once they hold its data."""
        present = [c for c in commits if c is not None]
        if not present:
            raise TopicNotFound()
        if len(present) < len(commits):
            raise VolumesOutOfSync("topic is missing on a volume: run recovery")
        newest = max(present, key=lambda c: c.next_id)
        source = dirs[commits.index(newest)]
        for topic_dir, commit in zip(dirs, commits):
            if commit != newest:
                _roll_forward(source, topic_dir, commit, newest)
                topic_dir.write_commit(newest, self.durable)
        return newest


def _regex_options(ignore_case: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a client's bad pattern belongs in its answer, not in the server log
    options.case_sensitive = not ignore_case
    return options


_REGEX_OPTIONS = {ignore_case: _regex_options(ignore_case) for ignore_case in (False, True)}


def compile_regex(pattern: str, ignore_case: bool = False):
    """``pattern`` compiled by RE2: the syntax of Go's regexp, which haraqa's server filters topics
    with, and matching in linear time. Python's ``re`` backtracks: ``^(a+)+$`` against a topic of 40
    a's and a dash would hold the worker, GIL and all, for hours. Raises InvalidRegex."""
    try:
        return re2.compile(pattern, _REGEX_OPTIONS[ignore_case])
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "unknown"
        raise InvalidRegex(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None


def _fit_32_bits(sizes: list[int]) -> bool:
    """Whether every size is a whole number from 0 to MAX_MESSAGE_BYTES: one C-speed pass
    (an unsigned 32-bit array refuses anything else) instead of min() and max()."""
    if _U32 is None:
        return all(isinstance(n, int) for n in sizes) and min(sizes) >= 0 and max(sizes) <= MAX_MESSAGE_BYTES
    try:
        array(_U32, sizes)
    except (OverflowError, TypeError):
        return False
    return True


_U32 = next((code for code in "IL" if array(code).itemsize == 4), None)


def _roll_forward(source: TopicDir, target: TopicDir, old: Commit, new: Commit) -> None:
    """Check ``target`` already holds what ``new`` adds over ``old``: the window between
    writing the commit to the first and the last volume. Anything else needs recovery."""
    if old.next_id > new.next_id:
        raise VolumesOutOfSync("volumes disagree: run recovery")
    segments = [s for s in source.segments() if old.active_segment <= s <= new.active_segment]
    for first in segments:
        start = max(old.next_id, first) - first
        end = (new.next_id if first == new.active_segment else _segment_after(segments, first)) - first
        wanted = pread_file(source.segment_path(first, "idx"), start * RECORD_SIZE, (end - start) * RECORD_SIZE)
        present = pread_file(target.segment_path(first, "idx"), start * RECORD_SIZE, (end - start) * RECORD_SIZE)
        if wanted != present or os.path.getsize(target.segment_path(first, "dat")) < IndexRecord.unpack(
            wanted[-RECORD_SIZE:]
        ).end:
            raise VolumesOutOfSync("volumes disagree: run recovery")


def _group_offset(dirs: tuple[TopicDir, ...], kept_in: str) -> int:
    """The group's next id, from the last volume holding a sound record of it; 0 for a new
    group. A group whose records are all unreadable is refused, not restarted from 0."""
    unreadable = False
    for topic_dir in reversed(dirs):
        next_id = topic_dir.read_group(kept_in)
        if next_id is not None:
            return next_id
        unreadable = unreadable or os.path.exists(topic_dir.group_path(kept_in))
    if unreadable:
        raise GroupOffsetCorrupt()
    return 0


def _segment_after(segments: list[int], first: int) -> int:
    return segments[segments.index(first) + 1]


def _last_timestamp(topic_dir: TopicDir, first: int, following: int) -> int:
    raw = pread_file(topic_dir.segment_path(first, "idx"), (following - first - 1) * RECORD_SIZE, RECORD_SIZE)
    return IndexRecord.unpack(raw).timestamp_ns if len(raw) == RECORD_SIZE else 0


def _remove_topic_files(topic_dir: TopicDir) -> None:
    """Remove the commit first (the topic vanishes at once), then its files and empty dirs."""
    unlink_quietly(topic_dir.commit_path)
    try:
        names = os.listdir(topic_dir.path)
    except FileNotFoundError:
        return
    for name in sorted(names, key=lambda n: not n.endswith("." + SEGMENT_REMOVAL_ORDER[0])):
        if layout.STORAGE_FILE.match(name) or name.startswith(layout.COMMIT_FILE):
            unlink_quietly(os.path.join(topic_dir.path, name))
    shutil.rmtree(os.path.join(topic_dir.path, layout.GROUPS_DIR), ignore_errors=True)
    path = topic_dir.path
    while path != topic_dir.root:
        try:
            os.rmdir(path)  # only succeeds while empty: nested topics keep their parents
        except OSError:
            break
        path = os.path.dirname(path)

