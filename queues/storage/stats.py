"""Read-only statistics over a store's files, for the admin dashboard.

Cheap by design: a topic's summary costs one directory listing, one commit read and a
``stat`` per segment; per-volume health compares commit records and segment lists only.
Checksums are read only when asked (``segment_table(verify=True)``, through recovery's
``verify_segment`` so the admin and ``check`` judge copies alike). Nothing here writes;
only the comparison of a topic's volumes takes its lock, for a few reads, since a batch is
committed volume by volume.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Literal

from .errors import Corruption, MessageDamaged, NoContent
from .layout import TopicDir, first_stored_id, pread_file, walk_topics
from .locks import topic_lock
from .records import RECORD_SIZE, Commit, IndexRecord, message_checksum
from .store import Store
from .verify import read_copy, verify_segment

Health = Literal["ok", "missing", "out of sync", "corrupt"]


@dataclass(frozen=True)
class TopicStats:
    """What one volume holds of a topic."""

    name: str
    first_id: int  # first id still stored
    next_id: int  # id the next message will get
    bytes: int
    segments: int
    last_write: float | None  # mtime of the commit record, seconds since the epoch

    @property
    def messages(self) -> int:
        return self.next_id - self.first_id

    @property
    def last_id(self) -> int | None:
        return self.next_id - 1 if self.messages else None


@dataclass(frozen=True)
class VolumeBadge:
    volume: str
    health: Health


def topic_stats(volume: str, topic: str) -> TopicStats | None:
    """Summary of ``topic`` on ``volume``; None if it is not there. Raises Corruption."""
    topic_dir = TopicDir(volume, topic)
    commit = topic_dir.read_commit()
    if commit is None:
        return None
    segments = topic_dir.committed_segments(commit)
    size = commit.data_end
    for first in segments:
        if first != commit.active_segment:
            size += _file_size(topic_dir.segment_path(first, "dat")) or 0
    return TopicStats(
        name=topic,
        first_id=first_stored_id(segments, commit),
        next_id=commit.next_id,
        bytes=size,
        segments=max(len(segments), 1),
        last_write=_mtime(topic_dir.commit_path),
    )


def served_stats(volumes: list[str], topic: str) -> tuple[TopicStats | None, str]:
    """Stats of ``topic`` from the volume consumes read it from: the last one holding it
    intact (see ``Store.offsets``), and that volume; (None, the last volume) if none does."""
    for volume in reversed(volumes):
        try:
            stats = topic_stats(volume, topic)
        except Corruption:
            continue
        if stats is not None:
            return stats, volume
    return None, volumes[-1]


def topic_health(volumes: list[str], topic: str) -> list[VolumeBadge]:
    """One badge per volume: do its commit and segment list match the last volume's?"""
    states = _locked_states(volumes, topic, with_segments=True)
    return [VolumeBadge(volume, _compare(state, states[-1])) for volume, state in zip(volumes, states)]


def _locked_states(volumes: list[str], topic: str, with_segments: bool = False) -> list[object]:
    """Each volume's commit state of ``topic``, read under the topic lock: a batch is committed
    volume by volume, so reads between two of its commits would see healthy volumes differ.
    (Held for a few reads: producers wait microseconds. Missing volumes are not locked, so
    nothing is created on them.)"""
    with topic_lock([volume for volume in volumes if os.path.isdir(volume)], topic):
        return [_state(TopicDir(volume, topic), with_segments) for volume in volumes]


def _state(topic_dir: TopicDir, with_segments: bool) -> object:
    commit = _commit_state(topic_dir)
    if isinstance(commit, str) or not with_segments:
        return commit
    return commit, topic_dir.committed_segments(commit)


def _commit_state(topic_dir: TopicDir) -> Commit | Health:
    try:
        commit = topic_dir.read_commit()
    except Corruption:
        return "corrupt"
    return "missing" if commit is None else commit


def _compare(state: object, reference: object) -> Health:
    if state in ("missing", "corrupt"):
        return state  # type: ignore[return-value]
    return "ok" if state == reference else "out of sync"


# the topic page: segments per volume


@dataclass
class SegmentRow:
    first_id: int
    messages: int  # messages the commit counts in this segment
    data_bytes: int | None  # None: file missing
    index_bytes: int | None
    verified: bool  # message checksums were read (else only the structure was compared)
    problems: list[str] = field(default_factory=list)  # what ``verify_segment`` found wrong
    bad_ids: list[int] = field(default_factory=list)
    lost_ids: list[int] = field(default_factory=list)  # damaged on every volume

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost_ids

    @property
    def status(self) -> str:
        if self.problems:
            return ", ".join(self.problems)
        if self.lost_ids:
            return "damaged"
        return "ok" if self.verified else "not verified"


@dataclass
class VolumeSegments:
    volume: str
    health: Health
    segments: list[SegmentRow]


def segment_table(
    volumes: list[str], topic: str, verify: bool, start: int = 0, limit: int | None = None
) -> list[VolumeSegments]:
    """Every volume's segments of ``topic`` (``limit`` of them from position ``start``)
    with sizes and checksum status.

    Uses ``verify.verify_segment``, as recovery does: the copies' index records and sizes are always
    compared; with ``verify`` every message's checksum is read on every copy (otherwise
    only where the structure disagrees). The segments listed are those of the last
    volume holding a readable commit (haraqa's rule for which copy is authoritative).
    """
    badges = topic_health(volumes, topic)
    rows: list[list[SegmentRow]] = [[] for _ in volumes]
    commit, source = _last_commit(volumes, topic)
    if commit is not None:
        segments = source.committed_segments(commit) or [commit.active_segment]
        ends = segments[1:] + [commit.next_id]
        stop = None if limit is None else start + limit
        for first, end in zip(segments[start:stop], ends[start:stop]):
            count = end - first
            copies = [read_copy(pos, TopicDir(volume, topic), first, count) for pos, volume in enumerate(volumes)]
            end_hint = commit.data_end if first == commit.active_segment else None
            try:
                verdict = verify_segment(copies, count, end_hint, deep=verify)
            except FileNotFoundError:
                continue  # removed by a truncate while this page read it
            removed = not os.path.exists(source.segment_path(first, "idx"))
            if removed and any(judged.problems for judged in verdict.copies):
                continue  # the same, noticed as files missing on some volumes
            for pos, judged in enumerate(verdict.copies):
                copy = judged.copy
                rows[pos].append(
                    SegmentRow(
                        first_id=first,
                        messages=count,
                        data_bytes=copy.data_size if copy.data_size >= 0 else None,
                        index_bytes=copy.index_size if copy.index_size >= 0 else None,
                        verified=verify or verdict.bytes_read > 0,
                        problems=[what for what, _ in judged.problems],
                        bad_ids=sorted({i for _, ids in judged.problems for i in ids}),
                        lost_ids=verdict.lost,
                    )
                )
    return [VolumeSegments(b.volume, b.health, r) for b, r in zip(badges, rows)]


def _last_commit(volumes: list[str], topic: str) -> tuple[Commit | None, TopicDir]:
    """The commit of the last volume that holds a readable one."""
    for volume in reversed(volumes):
        topic_dir = TopicDir(volume, topic)
        commit = _commit_state(topic_dir)
        if isinstance(commit, Commit):
            return commit, topic_dir
    return None, TopicDir(volumes[-1], topic)


# the message browser


@dataclass(frozen=True)
class MessageInfo:
    id: int
    size: int
    timestamp_ns: int
    head: bytes  # the first ``preview_bytes`` bytes
    checksum_ok: bool | None  # None: not checked (longer than the preview)
    damaged: bool = False  # lost on every volume: recovery marked it, it is never served

    @property
    def complete(self) -> bool:
        return len(self.head) == self.size


def browse(store: Store, topic: str, start: int, count: int, preview_bytes: int) -> list[MessageInfo]:
    """Up to ``count`` messages from id ``start`` with their index data and first bytes.

    Reads through ``Store.consume`` (the served copy), crossing segment boundaries; a
    message lost on every volume comes back with ``damaged`` set and no bytes. Raises
    TopicNotFound, MessageIdTruncated, Corruption; an id past the end gives [].
    """
    out: list[MessageInfo] = []
    while len(out) < count:
        try:
            found = store.consume(topic, start + len(out), count - len(out))
        except NoContent:
            break
        except MessageDamaged as exc:
            out.append(MessageInfo(exc.message_id, 0, 0, b"", None, damaged=True))
            continue
        # The data file is named after the segment's first id; the index file sits beside it.
        stem = os.path.splitext(found.data_path)[0]
        index_path, segment_first = stem + ".idx", int(os.path.basename(stem))
        raw = pread_file(index_path, (found.first_id - segment_first) * RECORD_SIZE, len(found.sizes) * RECORD_SIZE)
        if len(raw) < len(found.sizes) * RECORD_SIZE:
            break  # removed by a truncate since it was read: list what came before
        with found.open() as data:
            for position in range(len(found.sizes)):
                record = IndexRecord.unpack(raw[position * RECORD_SIZE : (position + 1) * RECORD_SIZE])
                head = os.pread(data.fileno(), min(record.length, preview_bytes), record.offset)
                checked = message_checksum(head) == record.checksum if len(head) == record.length else None
                out.append(MessageInfo(found.first_id + position, record.length, record.timestamp_ns, head, checked))
    return out


# the volumes page


@dataclass(frozen=True)
class VolumeStats:
    path: str
    exists: bool
    writable: bool
    free_bytes: int | None
    total_bytes: int | None
    topics: int
    missing_topics: int  # topics other volumes hold and this one does not
    out_of_sync_topics: int  # topics whose commit differs from the last volume's

    @property
    def health(self) -> str:
        if not self.exists:
            return "missing"
        if not self.writable:
            return "read-only"
        if self.missing_topics or self.out_of_sync_topics:
            return "degraded"
        return "ok"


def volume_stats(volumes: list[str]) -> list[VolumeStats]:
    """Path, space, topic count and health of every volume (one walk and commit read per topic)."""
    names = [set(walk_topics(volume)) for volume in volumes]
    everything = set().union(*names)
    states = {topic: _locked_states(volumes, topic) for topic in names[-1]}
    out = []
    for position, (volume, held) in enumerate(zip(volumes, names)):
        usage = _disk_usage(volume)
        out_of_sync = sum(
            1 for topic in held & states.keys() if _compare(states[topic][position], states[topic][-1]) != "ok"
        )
        out.append(
            VolumeStats(
                path=volume,
                exists=os.path.isdir(volume),
                writable=os.access(volume, os.W_OK | os.X_OK),
                free_bytes=usage.free if usage else None,
                total_bytes=usage.total if usage else None,
                topics=len(held),
                missing_topics=len(everything - held),
                out_of_sync_topics=out_of_sync,
            )
        )
    return out


def _disk_usage(path: str) -> shutil._ntuple_diskusage | None:
    try:
        return shutil.disk_usage(path)
    except OSError:
        return None


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None
