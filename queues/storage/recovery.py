"""``check``: compare every topic and segment across the volumes, verify every message,
and with ``fix=True`` repair what can be repaired.

One operation, three callers: ``manage.py recover``, the admin's check button and
``serve`` at startup (``Store.check`` delegates here). Each topic is checked under its
topic lock (``locks.topic_lock``: the flocks produce takes too), so a check can run while
the server serves; readers take no lock and see either the old file or the repaired one.

Which copy wins (haraqa's rule, made safe): the commit with the highest ``next_id`` is
the target (a commit written to the first volumes but not yet the last one is rolled
forward, as produce does); segment by segment and message by message, the last volume
whose copy verifies is the source (see ``verify``). Messages no volume holds intact are
marked damaged in their index records on every volume and reported in ``Report.lost``;
readers refuse them (``MessageDamaged``) and serve the messages around them.

A topic is repaired in this order: segment files (staged under temporary names, made
durable together, then renamed, see ``repair``), consumer groups, then the commit records,
so a repair interrupted by ``kill -9`` is redone by the next check. Segment files
beyond the commit (left by a crashed writer) and stale temporary files are removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import layout
from .errors import TopicNotFound, VolumeError
from .layout import TopicDir, unlink_quietly, write_file_atomically
from .locks import topic_lock
from .names import group_name, normalize_topic
from .records import INDEX_RECORD, RECORD_SIZE, Commit, is_sealed
from .repair import BATCH_BYTES, Run, StagedFiles, trim_file
from .report import Lost, Problem, Report, id_ranges
from .verify import SegmentVerdict, read_copy, verify_segment

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]  # (bytes done, bytes in total, what is being checked)


def check(
    store: Store, fix: bool = False, topics: list[str] | None = None, progress: Progress | None = None, deep: bool = True
) -> Report:
    """Check ``topics`` (default: every topic on any volume); repair with ``fix=True``.

    ``deep=False`` reads message data only where the copies' structure disagrees (the
    cost is then proportional to the index files, not the data). Holds each topic's lock
    while checking it. Raises VolumeError (a volume is not a directory), InvalidTopic and
    TopicNotFound (a requested topic is on no volume), OSError.
    """
    volumes = list(store.volumes)
    report = Report(volumes, fix, deep)
    for volume in volumes:
        if os.path.exists(volume) and not os.path.isdir(volume):
            raise VolumeError(f"volume {volume} is not a directory")
        if not os.path.isdir(volume):
            if fix:
                os.makedirs(volume, exist_ok=True)
            report.problems.append(Problem("volume missing", volume=volume, repaired=fix))
    names = _topics_to_check(volumes, topics)
    meter = _Meter(progress, sum(_topic_bytes(volumes, topic) for topic in names))
    for topic in names:
        with topic_lock([v for v in volumes if os.path.isdir(v)], topic):
            check_topic(volumes, topic, fix, deep, report, meter)
    meter.report("")
    return report


def repair_topic(volumes: list[str], topic: str) -> Report:
    """Repair one topic, structure first (``deep=False``); the caller holds its lock."""
    report = Report(list(volumes), fix=True, deep=False)
    check_topic(list(volumes), topic, True, False, report, _Meter(None, 0))
    for line in report.lines():
        logger.warning("repaired during a write: %s", line)
    return report


def active_segment_intact(dirs: list[TopicDir], commit: Commit) -> bool:
    """Cheap test (two ``stat`` per volume) that every volume can append after ``commit``."""
    for topic_dir in dirs:
        try:
            if (
                os.stat(topic_dir.segment_path(commit.active_segment, "dat")).st_size < commit.data_end
                or os.stat(topic_dir.segment_path(commit.active_segment, "idx")).st_size
                < commit.active_count * RECORD_SIZE
            ):
                return False
        except (FileNotFoundError, NotADirectoryError):
            return False
    return True


def check_topic(volumes: list[str], topic: str, fix: bool, deep: bool, report: Report, meter: _Meter) -> None:
    """Check (and repair) one topic on every volume; the caller holds the topic's lock."""
    dirs = [TopicDir(volume, topic) for volume in volumes]
    commits = [_read_commit(d) for d in dirs]
    if not any(present for present, _ in commits):
        return  # deleted since it was listed
    report.topics += 1
    absent = {pos for pos, (present, _) in enumerate(commits) if not present and not os.path.isdir(dirs[pos].path)}
    for pos in sorted(absent):
        report.problems.append(Problem("topic missing", topic, volumes[pos], repaired=fix))
    valid = [(commit.next_id, pos, commit) for pos, (_, commit) in enumerate(commits) if commit is not None]
    if valid:
        target = max(valid, key=lambda item: item[:2])[2]
    else:
        target = _rebuild_commit(dirs)
        report.problems.append(
            Problem(f"commit record corrupt on every volume, rebuilt from the segment files (next id {target.next_id})",
                    topic, repaired=fix)
        )
    on_disk = [_segment_names(d) for d in dirs]
    firsts = sorted({first for names in on_disk for first in names if first <= target.active_segment})
    if not firsts or firsts[-1] != target.active_segment:
        firsts.append(target.active_segment)
    truncated = _left_by_a_truncate(on_disk, firsts)
    firsts = firsts[len(truncated):]
    staged = StagedFiles()
    try:
        active_end = _check_segments(dirs, firsts, target, deep, fix, absent, staged, report, meter)
        staged.publish()
    except BaseException:
        staged.discard()
        raise
    target = Commit(target.next_id, target.active_segment, active_end)
    _check_groups(dirs, absent, report, fix)
    _check_commits(dirs, commits, target, absent, report, fix)
    _remove_leftovers(dirs, on_disk, target, truncated, report, fix)


def _check_segments(
    dirs: list[TopicDir], firsts: list[int], target: Commit, deep: bool, fix: bool, absent: set[int],
    staged: StagedFiles, report: Report, meter: _Meter,
) -> int:
    """Check (and stage the repair of) every segment; return the data end of the last one."""
    topic, active_end = dirs[0].topic, 0
    for k, first in enumerate(firsts):
        last = k == len(firsts) - 1
        count = (target.next_id if last else firsts[k + 1]) - first
        copies = [read_copy(pos, d, first, count) for pos, d in enumerate(dirs)]
        meter.item = f"{topic} segment {first}"
        meter.report(meter.item)
        segment = verify_segment(copies, count, target.data_end if last else None, deep, meter.read)
        meter.settle(sum(max(c.index_size, 0) + max(c.data_size, 0) for c in copies))
        report.segments += 1
        report.bytes_checked += segment.bytes_read
        _record_segment(report, topic, segment, absent, fix)
        if fix:
            report.bytes_copied += _repair_segment(segment, staged, meter)
            if staged.bytes >= BATCH_BYTES:
                staged.publish()
        active_end = segment.end
    return active_end


def _read_commit(topic_dir: TopicDir) -> tuple[bool, Commit | None]:
    """(whether the commit file exists, the commit if it is sound)."""
    try:
        with open(topic_dir.commit_path, "rb") as f:
            raw = f.read(RECORD_SIZE + 1)
    except (FileNotFoundError, NotADirectoryError):
        return False, None
    return True, Commit.unpack(raw) if len(raw) == RECORD_SIZE else None


def _segment_names(topic_dir: TopicDir) -> dict[int, list[str]]:
    """First id -> names of the segment files (``.dat``/``.idx``) on this volume."""
    names: dict[int, list[str]] = {}
    try:
        entries = os.listdir(topic_dir.path)
    except (FileNotFoundError, NotADirectoryError):
        return names
    for name in entries:
        if layout.STORAGE_FILE.match(name):
            names.setdefault(int(name[:20]), []).append(name)
    return names


def _left_by_a_truncate(on_disk: list[dict[int, list[str]]], firsts: list[int]) -> list[int]:
    """The first segments of ``firsts`` (but the last) that no volume has an index of: data a
    truncate cut short left behind, as it removes a segment's index before its data on each
    volume. Readers already skip them: a segment is listed by its index."""
    truncated = []
    for first in firsts[:-1]:
        if any(name.endswith(".idx") for names in on_disk for name in names.get(first, ())):
            break
        truncated.append(first)
    return truncated


def _rebuild_commit(dirs: list[TopicDir]) -> Commit:
    """A commit for a topic whose commit record is corrupt everywhere: the last segment
    holding messages, up to its last sealed record whose data is on some volume."""
    firsts = sorted({first for d in dirs for first in _segment_names(d)}, reverse=True)
    for active in firsts:
        best = (0, 0)
        for topic_dir in reversed(dirs):
            best = max(best, _intact_prefix(topic_dir, active))
        if best[0] or active == firsts[-1]:
            return Commit(active + best[0], active, best[1])
    return Commit()


def _intact_prefix(topic_dir: TopicDir, first: int) -> tuple[int, int]:
    """(records, data end) of the sealed, back-to-back records at the start of a segment."""
    try:
        data_size = os.stat(topic_dir.segment_path(first, "dat")).st_size
        with open(topic_dir.segment_path(first, "idx"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0, 0
    count = end = 0
    for at in range(0, len(raw) - RECORD_SIZE + 1, RECORD_SIZE):
        record = raw[at : at + RECORD_SIZE]
        offset, _, length, _, _ = INDEX_RECORD.unpack_from(record)
        if not is_sealed(record) or offset != end or offset + length > data_size:
            break
        count, end = count + 1, offset + length
    return count, end


def _record_segment(report: Report, topic: str, segment: SegmentVerdict, absent: set[int], fix: bool) -> None:
    for verdict in segment.copies:
        if verdict.copy.position in absent:
            continue  # reported once as "topic missing"
        for what, ids in verdict.problems:
            report.problems.append(
                Problem(what, topic, verdict.copy.topic_dir.root, segment.first, id_ranges(ids), repaired=fix)
            )
    report.lost.extend(Lost(topic, a, b) for a, b in id_ranges(segment.lost))


def _repair_segment(segment: SegmentVerdict, staged: StagedFiles, meter: _Meter) -> int:
    """Bring every copy of the segment to the canonical bytes (new files are staged, trims
    are done in place); return the bytes written."""
    written = 0
    runs = _data_runs(segment)
    for verdict in segment.copies:
        copy = verdict.copy
        if verdict.data_action or verdict.index_action:
            os.makedirs(copy.topic_dir.path, exist_ok=True)
        if verdict.data_action == "write":
            written += staged.copy(copy.data_path, runs, meter.copied)
        elif verdict.data_action == "trim":
            trim_file(copy.data_path, segment.end)
        if verdict.index_action == "write":
            written += staged.write(copy.index_path, segment.index)
        elif verdict.index_action == "trim":
            trim_file(copy.index_path, len(segment.index))
    return written


def _data_runs(segment: SegmentVerdict) -> list[Run]:
    """The canonical data file as runs of bytes to copy, merged by source volume."""
    paths = {verdict.copy.position: verdict.copy.data_path for verdict in segment.copies}
    source = segment.sources[0] if segment.sources else None
    if source is not None and segment.sources.count(source) == len(segment.sources):
        return [(paths[source], 0, segment.end)]  # the usual case: one copy holds it all
    runs: list[Run] = []
    for (offset, _, length, _, _), source in zip(segment.records, segment.sources):
        if not length:
            continue
        path = paths[source] if source is not None else None
        if runs and runs[-1][0] == path and runs[-1][1] + runs[-1][2] == offset:
            runs[-1] = (path, runs[-1][1], runs[-1][2] + length)
        else:
            runs.append((path, offset, length))
    return runs


def _check_groups(dirs: list[TopicDir], absent: set[int], report: Report, fix: bool) -> None:
    """Consumer group offsets: the last volume's sound value is copied to the others."""
    names: set[str] = set()
    for topic_dir in dirs:
        try:
            names.update(os.listdir(os.path.join(topic_dir.path, layout.GROUPS_DIR)))
        except (FileNotFoundError, NotADirectoryError):
            continue
    for group_file in sorted(names):  # ``names.group_file``'s, or a group kept before names were encoded
        if layout.TEMP_FILE.search(group_file):
            continue
        group = group_name(group_file)
        values = [d.read_group(group_file) for d in dirs]
        sound = [v for v in values if v is not None]
        if not sound:
            report.problems.append(
                Problem(f"consumer group {group!r}: offset corrupt on every volume, reset to the first message",
                        dirs[0].topic, repaired=fix)
            )
            if fix:
                for topic_dir in dirs:
                    unlink_quietly(topic_dir.group_path(group_file))
            continue
        for pos, (topic_dir, value) in enumerate(zip(dirs, values)):
            if value != sound[-1]:
                if pos not in absent:
                    what = f"consumer group {group!r}: offset {'missing or corrupt' if value is None else 'differs'}"
                    report.problems.append(Problem(what, topic_dir.topic, topic_dir.root, repaired=fix))
                if fix:
                    topic_dir.write_group(group_file, sound[-1], durable=True)


def _check_commits(
    dirs: list[TopicDir], commits: list[tuple[bool, Commit | None]], target: Commit, absent: set[int],
    report: Report, fix: bool,
) -> None:
    for pos, (topic_dir, (present, commit)) in enumerate(zip(dirs, commits)):
        if commit == target:
            continue
        if pos not in absent:
            if not present:
                what = "commit record missing"
            elif commit is None:
                what = "commit record corrupt"
            elif commit.next_id < target.next_id:
                what = f"commit record behind (next id {commit.next_id}, rolled forward to {target.next_id})"
            else:
                what = "commit record disagrees with the index"
            report.problems.append(Problem(what, topic_dir.topic, topic_dir.root, repaired=fix))
        if fix:
            write_file_atomically(topic_dir.commit_path, target.pack(), durable=True)


def _remove_leftovers(
    dirs: list[TopicDir], on_disk: list[dict[int, list[str]]], target: Commit, truncated: list[int], report: Report,
    fix: bool,
) -> None:
    """Segments past the commit (a crashed writer's), the data of ``truncated`` segments (a
    truncate cut short) and temporary files (a crashed repair's)."""
    for topic_dir, names in zip(dirs, on_disk):
        garbage = [
            name for first, files in names.items() if first > target.active_segment or first in truncated
            for name in files
        ]
        for folder in (topic_dir.path, os.path.join(topic_dir.path, layout.GROUPS_DIR)):
            try:
                garbage += [
                    os.path.relpath(os.path.join(folder, n), topic_dir.path)
                    for n in os.listdir(folder)
                    if layout.TEMP_FILE.search(n)
                ]
            except (FileNotFoundError, NotADirectoryError):
                pass
        if not garbage:
            continue
        what = f"leftover files removed: {', '.join(sorted(garbage))}" if fix else f"leftover files: {', '.join(sorted(garbage))}"
        report.problems.append(Problem(what, topic_dir.topic, topic_dir.root, repaired=fix))
        if fix:
            for name in garbage:
                unlink_quietly(os.path.join(topic_dir.path, name))


def _topics_to_check(volumes: list[str], requested: list[str] | None) -> list[str]:
    stored = set()
    for volume in volumes:
        stored.update(layout.walk_topics(volume))
    if requested is None:
        return sorted(stored)
    names = sorted({normalize_topic(t) for t in requested})
    missing = [t for t in names if t not in stored]
    if missing:
        raise TopicNotFound(f"topic does not exist: {', '.join(missing)}")
    return names


def _topic_bytes(volumes: list[str], topic: str) -> int:
    total = 0
    for volume in volumes:
        try:
            with os.scandir(os.path.join(volume, topic)) as entries:
                total += sum(e.stat().st_size for e in entries if layout.STORAGE_FILE.match(e.name))
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


class _Meter:
    """Progress in bytes of segment files gone through, for the caller's callback."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress = progress
        self.total = total
        self.done = 0
        self.item = ""
        self._segment = 0  # bytes reported within the current segment

    def read(self, size: int) -> None:
        self._segment += size
        self.report(self.item)

    def copied(self, _size: int) -> None:
        self.report(self.item)

    def settle(self, segment_bytes: int) -> None:
        """The current segment is done: count exactly its files' bytes."""
        self.done += segment_bytes
        self._segment = 0
        self.report(self.item)

    def report(self, item: str) -> None:
        if self.progress is not None:
            done = min(self.done + self._segment, self.total) if self.total else self.done
            self.progress(done, max(self.total, done), item)
