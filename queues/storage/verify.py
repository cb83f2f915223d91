"""Checking one segment on every volume and choosing, message by message, the copy to keep.

A segment holds ``count`` messages. Its canonical index is built from the copies' index
records: for each message, the last volume's record wins when its check word verifies and
its offset continues the previous message; otherwise the volume before it, and so on
(haraqa's rule: the last volume that holds the data is authoritative). The data are then
checked on every copy against the canonical records' checksums; a message's canonical
bytes come from the last volume whose copy verifies, so a bad copy never wins over a good
one. A message that no copy verifies is *lost*: its record is kept (or rebuilt from its
neighbours' offsets when no copy has it) with ``FLAG_DAMAGED`` set in the record's flags
word, so readers refuse it instead of serving it as valid.

A deep check of a healthy segment costs one streamed read of every copy (``READ_CHUNK`` at a
time), one message checksum per message on the last volume's copy and a byte comparison of the
others; a quick one reads only the index records, and message data only where copies disagree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .layout import TopicDir, pread_exact
from .records import (
    FLAG_DAMAGED,
    FLAGS_BYTE,
    INDEX_RECORD,
    RECORD_SIZE,
    SEALED_RECORD,
    invalid_records,
    is_sealed,
    message_checksum,
    partial_checksum,
    seal,
)

READ_CHUNK = 4 << 20
Record = tuple[int, int, int, int, int]  # offset, timestamp_ns, length, checksum, flags
_buffers = threading.local()


@dataclass
class Copy:
    """What one volume holds of one segment."""

    position: int  # index of the volume in the store's list
    topic_dir: TopicDir
    first: int
    index: bytes | None  # its first ``count`` index records (fewer if short); None: no file
    index_size: int  # -1: no file
    data_size: int  # -1: no file

    @property
    def index_path(self) -> str:
        return self.topic_dir.segment_path(self.first, "idx")

    @property
    def data_path(self) -> str:
        return self.topic_dir.segment_path(self.first, "dat")


def read_copy(position: int, topic_dir: TopicDir, first: int, count: int) -> Copy:
    index, index_size = None, -1
    try:
        with open(topic_dir.segment_path(first, "idx"), "rb", buffering=0) as f:
            index_size = os.fstat(f.fileno()).st_size
            index = pread_exact(f.fileno(), count * RECORD_SIZE, 0)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    try:
        data_size = os.stat(topic_dir.segment_path(first, "dat")).st_size
    except (FileNotFoundError, NotADirectoryError):
        data_size = -1
    return Copy(position, topic_dir, first, index, index_size, data_size)


@dataclass
class CopyVerdict:
    """What is wrong with one copy and what repairing it takes."""

    copy: Copy
    problems: list[tuple[str, list[int]]] = field(default_factory=list)  # (what, message ids)
    index_action: str | None = None  # None, "trim" or "write"
    data_action: str | None = None


@dataclass
class SegmentVerdict:
    first: int
    records: list[Record]
    index: bytes  # the canonical index file
    sources: list[int | None]  # per message: position of the copy whose bytes to keep (None: zeros)
    lost: list[int]  # ids of messages no copy holds intact (flagged damaged)
    copies: list[CopyVerdict]
    bytes_read: int

    @property
    def end(self) -> int:
        return self.records[-1][0] + self.records[-1][2] if self.records else 0


def verify_segment(
    copies: list[Copy], count: int, end_hint: int | None, deep: bool, on_read: Callable[[int], None] | None = None
) -> SegmentVerdict:
    """Compare the copies of one segment (ordered by volume) and decide what each needs.

    ``end_hint`` is the data size the commit expects (active segment) or None. With
    ``deep=False`` the message checksums are read only when the copies' structure disagrees.
    """
    first = copies[0].first
    records, rebuilt, canonical = choose_records(copies, count, end_hint)
    end = records[-1][0] + records[-1][2] if records else 0
    if canonical is None:
        canonical = pack_records(records)
    verdicts = [CopyVerdict(c) for c in copies]
    suspect = any(c.index != canonical or c.data_size < end for c in copies)
    preferred = None  # deep: each message's source is the last volume whose copy verifies
    if deep or suspect:
        ok, bytes_read, reference = verify_data(copies, records, end, on_read, compare=deep)
        if not deep:
            preferred = reference  # quick: only the copy read and verified is a source
    else:
        ok, bytes_read = [bytearray(b"\1" * count) for _ in copies], 0
    sources, lost = _sources(copies, records, ok, rebuilt, canonical, preferred)
    if lost:
        lost_set = set(lost)
        records = [(*r[:4], r[4] | FLAG_DAMAGED) if i in lost_set else r for i, r in enumerate(records)]
        canonical = pack_records(records)
    segment = SegmentVerdict(first, records, canonical, sources, [first + i for i in lost], verdicts, bytes_read)
    by_position = {c.position: c for c in copies}
    for verdict in verdicts:
        _judge_copy(verdict, segment, ok[verdict.copy.position], by_position)
    return segment


def _sources(
    copies: list[Copy], records: list[Record], ok: list[bytearray], rebuilt: set[int], canonical: bytes,
    preferred: int | None,
) -> tuple[list[int | None], list[int]]:
    """Per message, the ``preferred`` copy if it verifies, else the last one that does; and
    the messages no copy holds intact."""
    first_choice = copies[-1].position if preferred is None else preferred
    if not rebuilt and 0 not in ok[first_choice] and not any_flagged(canonical):
        return [first_choice] * len(records), []  # the healthy case
    sources: list[int | None] = []
    lost: list[int] = []
    for i, record in enumerate(records):
        if ok[first_choice][i]:
            source: int | None = first_choice
        else:
            source = next((c.position for c in reversed(copies) if ok[c.position][i]), None)
        if source is None or i in rebuilt or record[4] & FLAG_DAMAGED:
            lost.append(i)
            end_of = record[0] + record[2]
            source = next((c.position for c in reversed(copies) if c.data_size >= end_of), None)
        sources.append(source)
    return sources, lost


def any_flagged(index: bytes) -> bool:
    """Whether a record of ``index`` (whole records) has a flag set, at C speed."""
    flags = index[FLAGS_BYTE::RECORD_SIZE]
    return flags.count(0) != len(flags)


def pack_records(records: list[Record]) -> bytes:
    pack = INDEX_RECORD.pack
    return b"".join(seal(pack(*r)) for r in records)


def choose_records(copies: list[Copy], count: int, end_hint: int | None) -> tuple[list[Record], set[int], bytes | None]:
    """The canonical records, those rebuilt because no copy had them, and the index bytes
    when every copy already holds exactly them (the healthy case: nothing to re-pack)."""
    indexes = [c.index for c in copies if c.index is not None]
    if indexes and all(x == indexes[-1] for x in indexes) and len(indexes[-1]) == count * RECORD_SIZE:
        records = _sound_records(indexes[-1])
        if records is not None:
            return records, set(), indexes[-1]
    return (*_choose_each(copies, count, end_hint), None)


def _sound_records(raw: bytes) -> list[Record] | None:
    """The records of ``raw`` if every one is sealed and they lie back to back from 0."""
    full = list(SEALED_RECORD.iter_unpack(raw))
    if not full:
        return []
    if invalid_records(raw):
        return None
    if full[0][0] != 0 or [r[0] for r in full[1:]] != [r[0] + r[2] for r in full[:-1]]:
        return None
    return [r[:5] for r in full]


def _choose_each(copies: list[Copy], count: int, end_hint: int | None) -> tuple[list[Record], set[int]]:
    """Record by record: the last volume's sealed record that continues the previous one."""
    records: list[Record] = []
    rebuilt: list[int] = []  # records no copy has intact; rebuilt once the next good one is known
    position, timestamp = 0, 0
    for i in range(count):
        chosen = None
        for copy in reversed(copies):
            raw = copy.index[i * RECORD_SIZE : (i + 1) * RECORD_SIZE] if copy.index else b""
            if not is_sealed(raw):
                continue
            record = INDEX_RECORD.unpack(raw[:28])
            fits = record[0] >= position if _gap_open(rebuilt, i) else record[0] == position
            if fits and (chosen is None or chosen[4] & FLAG_DAMAGED):
                chosen = record
                if not record[4] & FLAG_DAMAGED:
                    break
        if chosen is None:
            rebuilt.append(i)
            continue
        if _gap_open(rebuilt, i):
            records.extend(_gap_records(rebuilt, i, position, chosen[0], chosen[1]))
        records.append(chosen)
        position, timestamp = chosen[0] + chosen[2], chosen[1]
    if _gap_open(rebuilt, count):
        tail = end_hint if end_hint is not None else _data_end_guess(copies, position)
        records.extend(_gap_records(rebuilt, count, position, max(tail, position), timestamp))
    return records, set(rebuilt)


def _gap_open(rebuilt: list[int], i: int) -> bool:
    """Whether the records just before ``i`` are missing from every copy."""
    return bool(rebuilt) and rebuilt[-1] == i - 1


def _gap_records(rebuilt: list[int], i: int, start: int, stop: int, timestamp: int) -> list[Record]:
    """Records for the run of missing messages ending before ``i``: the first spans ``start..stop``."""
    run = 1
    while run < len(rebuilt) and rebuilt[-run - 1] == i - run - 1:
        run += 1
    return [(start, timestamp, stop - start, 0, FLAG_DAMAGED)] + [(stop, timestamp, 0, 0, FLAG_DAMAGED)] * (run - 1)


def _data_end_guess(copies: list[Copy], position: int) -> int:
    """A closed segment's size when its last records are lost: the last volume's data file."""
    return next((c.data_size for c in reversed(copies) if c.data_size >= position), position)


def verify_data(
    copies: list[Copy], records: list[Record], end: int, on_read: Callable[[int], None] | None, compare: bool = True
) -> tuple[list[bytearray], int, int]:
    """Per copy, per message: 1 if the copy's bytes match the message's checksum; the bytes
    read; the reference copy.

    The reference (the last copy with all the data) is checked message by message. With
    ``compare`` the others are compared to it chunk by chunk and checked on their own only
    where they differ; without, they are trusted where the reference verifies (the quick
    check's premise) and checked on their own only where it does not.
    """
    ok = [bytearray(len(records)) for _ in range(max(c.position for c in copies) + 1)]
    readable = [c for c in copies if c.data_size >= 0]
    if not readable:
        return ok, 0, copies[-1].position
    whole = [c for c in readable if c.data_size >= end]
    reference = (whole or readable)[-1].position
    fds = {c.position: os.open(c.data_path, os.O_RDONLY | os.O_CLOEXEC) for c in readable}
    try:
        streamed = fds if compare else {reference: fds[reference]}
        differing, bytes_read = _stream_reference(streamed, reference, records, end, ok[reference], on_read)
        theirs = ok[reference]
        failed = [i for i, good in enumerate(theirs) if not good]
        for copy in readable:
            if copy.position == reference:
                continue
            mine, chunks = ok[copy.position], differing.get(copy.position)
            mine[:] = theirs
            if chunks or copy.data_size < end:
                for i, (offset, _, length, checksum, _) in enumerate(records):
                    if offset + length > copy.data_size:
                        mine[i] = 0
                    elif chunks and length and any(
                        k in chunks for k in range(offset // READ_CHUNK, (offset + length - 1) // READ_CHUNK + 1)
                    ):
                        mine[i] = checksum_of_range(fds[copy.position], offset, length) == checksum
            if not compare:  # where the reference fails, this copy may hold the good bytes
                for i in failed:
                    offset, _, length, checksum, _ = records[i]
                    if offset + length <= copy.data_size:
                        mine[i] = checksum_of_range(fds[copy.position], offset, length) == checksum
        return ok, bytes_read, reference
    finally:
        for fd in fds.values():
            os.close(fd)


def _stream_reference(
    fds: dict[int, int], reference: int, records: list[Record], end: int, ok: bytearray,
    on_read: Callable[[int], None] | None,
) -> tuple[dict[int, set[int]], int]:
    """Check the reference copy's messages in one pass and note the chunks where others differ."""
    differing: dict[int, set[int]] = {}
    buffers = dict(zip(fds, _read_buffers(len(fds))))
    i, carry, count, bytes_read = 0, None, len(records), 0
    for start in range(0, max(end, 1), READ_CHUNK):
        size = min(READ_CHUNK, end - start)
        lengths = {position: _read_into(fd, buffers[position], size, start) for position, fd in fds.items()}
        mine, got = buffers[reference], lengths[reference]
        stop, view = start + got, memoryview(mine)
        while i < count:
            offset, _, length, checksum, _ = records[i]
            if offset + length > stop:
                if offset < stop:
                    carry = partial_checksum(view[max(offset - start, 0) : got], carry)
                break
            ok[i] = message_checksum(view[max(offset - start, 0) : offset + length - start], carry) == checksum
            carry, i = None, i + 1
        view.release()
        for position, length in lengths.items():
            bytes_read += length
            if position != reference and (length != got or not _same(buffers[position], mine, got)):
                differing.setdefault(position, set()).add(start // READ_CHUNK)
        if on_read is not None:
            on_read(sum(lengths.values()))
        if got < size:  # the reference is short: the others must be checked on their own
            rest = set(range(start // READ_CHUNK + 1, (end - 1) // READ_CHUNK + 1))
            for position in fds:
                if position != reference:
                    differing.setdefault(position, set()).update(rest)
            break
    return differing, bytes_read


def _read_buffers(count: int) -> list[bytearray]:
    """``count`` buffers of READ_CHUNK bytes, kept per thread: fresh ones cost a page fault per page."""
    pool = _buffers.__dict__.setdefault("pool", [])
    if pool and len(pool[0]) != READ_CHUNK:
        pool.clear()
    while len(pool) < count:
        pool.append(bytearray(READ_CHUNK))
    return pool[:count]


def _read_into(fd: int, buffer: bytearray, size: int, offset: int) -> int:
    """Fill ``buffer[:size]`` from ``offset``; return how much the file had."""
    got = 0
    with memoryview(buffer) as view:
        while got < size:
            n = os.preadv(fd, [view[got:size]], offset + got)
            if not n:
                break
            got += n
    return got


def _same(a: bytearray, b: bytearray, size: int) -> bool:
    # bytearray == is a memcmp; comparing memoryviews goes element by element
    return a == b if size == len(a) else a[:size] == b[:size]


def checksum_of_range(fd: int, offset: int, length: int) -> int | None:
    """The message checksum of ``length`` bytes at ``offset``, or None if the file is shorter."""
    if length == 0:
        return message_checksum(b"")
    partial = None
    while length > READ_CHUNK:
        chunk = os.pread(fd, READ_CHUNK, offset)
        if not chunk:
            return None
        partial = partial_checksum(chunk, partial)
        offset += len(chunk)
        length -= len(chunk)
    last = pread_exact(fd, length, offset)
    return message_checksum(last, partial) if len(last) == length else None


def same_bytes(fd_a: int, fd_b: int, offset: int, length: int) -> bool:
    while length:
        size = min(READ_CHUNK, length)
        a, b = pread_exact(fd_a, size, offset), pread_exact(fd_b, size, offset)
        if a != b or len(a) != size:
            return False
        offset += size
        length -= size
    return True


def _judge_copy(verdict: CopyVerdict, segment: SegmentVerdict, ok: bytearray, by_position: dict[int, Copy]) -> None:
    """Fill in what is wrong with one copy and whether its files must be trimmed or rewritten."""
    copy, problems, records = verdict.copy, verdict.problems, segment.records
    first, canonical, end = copy.first, segment.index, segment.end
    lost = {i - first for i in segment.lost}
    if copy.index is None:
        problems.append(("index file missing", []))
    elif copy.index != canonical:
        have = min(len(copy.index), len(canonical)) // RECORD_SIZE
        bad = [first + i for i in range(have) if i not in lost and _record(copy.index, i) != _record(canonical, i)]
        if bad:
            problems.append(("index records corrupt", bad))
        if copy.index_size < len(canonical):
            problems.append(("index file short", list(range(first + have, first + len(records)))))
    if copy.index != canonical:
        verdict.index_action = "write"
    elif copy.index_size > len(canonical):
        problems.append(("index file overlong", []))
        verdict.index_action = "trim"
    if copy.data_size < 0:
        problems.append(("data file missing", []))
        verdict.data_action = "write"
        return
    bad: list[int] = []
    if 0 in ok or copy.data_size < end:
        ends = [offset + length for offset, _, length, _, _ in records]
        bad = [first + i for i in range(len(records)) if not ok[i] and i not in lost and ends[i] <= copy.data_size]
        if bad:
            problems.append(("data corrupt", bad))
        if copy.data_size < end:
            problems.append(("data file short", [first + i for i in range(len(records)) if ends[i] > copy.data_size]))
    if bad or copy.data_size < end or not _lost_bytes_match(copy, segment, by_position):
        verdict.data_action = "write"
    elif copy.data_size > end:
        problems.append(("data file overlong", []))
        verdict.data_action = "trim"


def _record(index: bytes, i: int) -> bytes:
    return index[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]


def _lost_bytes_match(copy: Copy, segment: SegmentVerdict, by_position: dict[int, Copy]) -> bool:
    """Whether the copy already holds, for each lost message, the bytes every volume will keep."""
    first = copy.first
    pending = [i - first for i in segment.lost if segment.sources[i - first] != copy.position]
    if not pending:
        return True
    if any(segment.sources[i] is None for i in pending):
        return False
    fds: dict[int, int] = {}
    mine = os.open(copy.data_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for i in pending:
            source = segment.sources[i]
            assert source is not None
            if source not in fds:
                fds[source] = os.open(by_position[source].data_path, os.O_RDONLY | os.O_CLOEXEC)
            offset, _, length, _, _ = segment.records[i]
            if not same_bytes(mine, fds[source], offset, length):
                return False
        return True
    finally:
        os.close(mine)
        for fd in fds.values():
            os.close(fd)
