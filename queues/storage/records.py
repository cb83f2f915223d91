"""Fixed-size binary records: the index entry of one message and a topic's commit point.

Index record (32 bytes, little endian), one per message, at ``(id - first_id) * 32`` in
the segment's ``.idx`` file, so finding a message costs one ``pread`` whatever the topic size::

    offset u64 | timestamp_ns i64 | length u32 | checksum u32 | flags u32 | check u32

Commit record (32 bytes) in the topic's ``.commit`` file on every volume; a message is
visible once the commit of the volume being read counts it::

    next_id u64 | active_segment u64 | data_end u64 | version u32 | check u32

``checksum`` is the low 32 bits of the message's xxh3-64 hash (several times faster than
crc32 per message, which matters at 1000 messages a batch). ``check`` seals a record: the
XOR of its seven other 32-bit words and a non-zero seed, so a flipped bit, byte or word and
an all-zero (torn) record never validate. Both are computed for whole batches column by
column, a few C-level operations instead of a Python call per record.
"""

from __future__ import annotations

import functools
import struct
from array import array
from dataclasses import dataclass
from itertools import chain, repeat

import xxhash

INDEX_RECORD = struct.Struct("<QqIII")  # the 28 bytes before the check word
RECORD_SIZE = 32
COMMIT_VERSION = 1
LENGTH_WORD = 4  # the length field as the 5th u32 word of a record, for memoryview casts
_CHECK_SEED = 0xC33CA55A
_SEVEN_WORDS = struct.Struct("<7I")
_WORD = struct.Struct("<I")
_COMMIT = struct.Struct("<QQQI")
_CHECKSUM_MASK = 0xFFFFFFFF
_FEW_RECORDS = 100  # up to this many, one struct.pack call beats building columns

Hasher = xxhash.xxh3_64


def message_checksum(data: bytes | memoryview, partial: Hasher | None = None) -> int:
    """The checksum of a message, or of ``partial``'s bytes followed by ``data``."""
    if partial is None:
        return xxhash.xxh3_64_intdigest(data) & _CHECKSUM_MASK
    partial.update(data)
    return partial.intdigest() & _CHECKSUM_MASK


message_hash = xxhash.xxh3_64_intdigest  # full 64 bits, for pack_index; C speed in a map()


def partial_checksum(data: bytes | memoryview, partial: Hasher | None = None) -> Hasher:
    """Start (or continue) the checksum of a message that arrives in pieces."""
    partial = partial if partial is not None else Hasher()
    partial.update(data)
    return partial


def _check_word(body: bytes | memoryview) -> int:
    check = _CHECK_SEED
    for word in _SEVEN_WORDS.unpack_from(body):
        check ^= word
    return check


def seal(body: bytes) -> bytes:
    """Append the check word to the 28 bytes of ``body``."""
    return body + _WORD.pack(_check_word(body))


def is_sealed(record: bytes | memoryview) -> bool:
    return len(record) == RECORD_SIZE and _WORD.unpack_from(record, 28)[0] == _check_word(record)


def _check_columns(records: bytes | bytearray | memoryview, count: int) -> list[bytes]:
    """The check word every record should carry, as 4 byte-columns (byte k of each word)."""
    columns = []
    for k in range(4):
        seed_byte = (_CHECK_SEED >> (8 * k)) & 0xFF
        column = int.from_bytes(bytes([seed_byte]) * count, "little")
        for word_start in range(0, 28, 4):
            column ^= int.from_bytes(records[word_start + k :: RECORD_SIZE], "little")
        columns.append(column.to_bytes(count, "little"))
    return columns


def invalid_records(records: bytes | bytearray | memoryview) -> list[int]:
    """Positions of the (whole) records whose check word does not match."""
    count = len(records) // RECORD_SIZE
    expected = _check_columns(records, count)
    stored = [bytes(records[28 + k :: RECORD_SIZE]) for k in range(4)]
    if stored == expected:
        return []
    return [i for i in range(count) if any(stored[k][i] != expected[k][i] for k in range(4))]


@functools.lru_cache(maxsize=128)
def _records_struct(count: int) -> struct.Struct:
    return struct.Struct("<" + "QqIIII" * count)


def pack_index(offsets: list[int], lengths: list[int], hashes: list[int], timestamp_ns: int) -> bytes:
    """The sealed index records of a batch part; ``hashes`` are full 64-bit xxh3 values
    (``message_hashes``), of which the records keep the low 32 bits."""
    count = len(lengths)
    if count <= _FEW_RECORDS:
        checksums = [h & _CHECKSUM_MASK for h in hashes]
        stamp = timestamp_ns & 0xFFFFFFFFFFFFFFFF
        same_for_all = _CHECK_SEED ^ (stamp & _CHECKSUM_MASK) ^ (stamp >> 32)  # flags are 0
        checks = [
            same_for_all ^ (o & _CHECKSUM_MASK) ^ (o >> 32) ^ n ^ c for o, n, c in zip(offsets, lengths, checksums)
        ]
        fields = zip(offsets, repeat(timestamp_ns), lengths, checksums, repeat(0), checks)
        return _records_struct(count).pack(*chain.from_iterable(fields))
    out = bytearray(count * RECORD_SIZE)
    timestamp = timestamp_ns.to_bytes(8, "little", signed=True)
    for start, column, width, kept in (
        (0, array("Q", offsets).tobytes(), 8, 8),
        (16, array("I", lengths).tobytes(), 4, 4),
        (20, array("Q", hashes).tobytes(), 8, 4),  # the low half of each little-endian hash
    ):
        for k in range(kept):
            out[start + k :: RECORD_SIZE] = column[k::width]
    for k in range(8):
        out[8 + k :: RECORD_SIZE] = bytes(repeat(timestamp[k], count))
    for k, column in enumerate(_check_columns(out, count)):
        out[28 + k :: RECORD_SIZE] = column
    return bytes(out)


@dataclass(frozen=True)
class IndexRecord:
    offset: int
    timestamp_ns: int
    length: int
    checksum: int

    def pack(self) -> bytes:
        return seal(INDEX_RECORD.pack(self.offset, self.timestamp_ns, self.length, self.checksum, 0))

    @classmethod
    def unpack(cls, record: bytes | memoryview) -> IndexRecord:
        offset, timestamp_ns, length, checksum, _flags = INDEX_RECORD.unpack_from(record)
        return cls(offset, timestamp_ns, length, checksum)

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Commit:
    next_id: int = 0
    active_segment: int = 0
    data_end: int = 0

    def pack(self) -> bytes:
        return seal(_COMMIT.pack(self.next_id, self.active_segment, self.data_end, COMMIT_VERSION))

    @classmethod
    def unpack(cls, record: bytes) -> Commit | None:
        """Decode a commit record, or None when it is torn or corrupt."""
        if not is_sealed(record):
            return None
        next_id, active_segment, data_end, version = _COMMIT.unpack_from(record)
        if version != COMMIT_VERSION or active_segment > next_id:
            return None
        return cls(next_id, active_segment, data_end)

    @property
    def active_count(self) -> int:
        return self.next_id - self.active_segment
