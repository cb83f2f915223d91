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
import sys
from array import array
from itertools import accumulate, chain, repeat
from operator import xor
from typing import NamedTuple

import xxhash

INDEX_RECORD = struct.Struct("<QqIII")  # the 28 bytes before the check word
SEALED_RECORD = struct.Struct("<QqIIII")  # an index record with its check word
FLAGS_BYTE = 24  # offset of a record's flags field; FLAG_DAMAGED is in its low byte
FLAG_DAMAGED = 1  # in the flags: recovery found the message lost on every volume; never served
RECORD_SIZE = 32
COMMIT_VERSION = 1
LENGTH_WORD = 4  # the length field as the 5th u32 word of a record, for memoryview casts
_CHECK_SEED = 0xC33CA55A
_SEVEN_WORDS = struct.Struct("<7I")
_WORD = struct.Struct("<I")
_COMMIT = struct.Struct("<QQQI")
_CHECKSUM_MASK = 0xFFFFFFFF
_FEW_RECORDS = 8  # up to this many, one struct.pack call beats building columns
WORDS_PER_RECORD = RECORD_SIZE // 4
_LITTLE = "little"
# columns of records are built as native u32 arrays: that is the file's layout on little-endian machines
_WORD_ARRAYS = sys.byteorder == _LITTLE and array("I").itemsize == 4

Hasher = xxhash.xxh3_64


def message_checksum(data: bytes | memoryview, partial: Hasher | None = None) -> int:
    """The checksum of a message, or of ``partial``'s bytes followed by ``data``."""
    if partial is None:
        return xxhash.xxh3_64_intdigest(data) & _CHECKSUM_MASK
    partial.update(data)
    return partial.intdigest() & _CHECKSUM_MASK


message_hash = xxhash.xxh3_64_intdigest  # full 64 bits, for pack_index; C speed in a map()


def message_hashes(data: memoryview, sizes: list[int]) -> list[int]:
    """The 64-bit hash of each message of ``sizes``, stored back to back in ``data``."""
    if len(sizes) == 1:
        return [message_hash(data)]
    start = 0
    return [message_hash(data[start : (start := end)]) for end in accumulate(sizes)]


def partial_checksum(data: bytes | memoryview, partial: Hasher | None = None) -> Hasher:
    """Start (or continue) the checksum of a message that arrives in pieces."""
    partial = partial if partial is not None else Hasher()
    partial.update(data)
    return partial


def _check_word(body: bytes | memoryview) -> int:
    return functools.reduce(xor, _SEVEN_WORDS.unpack_from(body), _CHECK_SEED)


def seal(body: bytes) -> bytes:
    """Append the check word to the 28 bytes of ``body``."""
    return body + _WORD.pack(_check_word(body))


def is_sealed(record: bytes | memoryview) -> bool:
    return len(record) == RECORD_SIZE and _WORD.unpack_from(record, 28)[0] == _check_word(record)


def _word_columns(records: bytes | bytearray | memoryview) -> list[array]:
    """The 8 u32 words of every (whole) record, one array per word position."""
    words = array("I", records[: len(records) // RECORD_SIZE * RECORD_SIZE])
    return [words[k::WORDS_PER_RECORD] for k in range(WORDS_PER_RECORD)]


def _xor_columns(columns: list[array], constant: int) -> array:
    """Word by word, the XOR of ``columns`` and ``constant``: one big-int XOR per column."""
    count = len(columns[0])
    check = int.from_bytes(array("I", [constant]).tobytes() * count, _LITTLE)
    for column in columns:
        check ^= int.from_bytes(column.tobytes(), _LITTLE)
    return array("I", check.to_bytes(count * 4, _LITTLE))


def invalid_records(records: bytes | bytearray | memoryview) -> list[int]:
    """Positions of the (whole) records whose check word does not match."""
    if not _WORD_ARRAYS:
        return [i for i in range(len(records) // RECORD_SIZE) if not is_sealed(records[i * 32 : (i + 1) * 32])]
    columns = _word_columns(records)
    expected, stored = _xor_columns(columns[:7], _CHECK_SEED), columns[7]
    if expected == stored:
        return []
    return [i for i, (want, have) in enumerate(zip(expected, stored)) if want != have]


@functools.lru_cache(maxsize=128)
def _records_struct(count: int) -> struct.Struct:
    return struct.Struct("<" + "QqIIII" * count)


def pack_index(offsets: list[int], lengths: list[int], hashes: list[int], timestamp_ns: int) -> bytes:
    """The sealed index records of a batch part; ``hashes`` are full 64-bit xxh3 values
    (``message_hash``), of which the records keep the low 32 bits."""
    count = len(lengths)
    stamp = timestamp_ns & 0xFFFFFFFFFFFFFFFF
    same_for_all = _CHECK_SEED ^ (stamp & _CHECKSUM_MASK) ^ (stamp >> 32)  # flags are 0
    if count == 1:
        offset, length, checksum = offsets[0], lengths[0], hashes[0] & _CHECKSUM_MASK
        check = same_for_all ^ (offset & _CHECKSUM_MASK) ^ (offset >> 32) ^ length ^ checksum
        return SEALED_RECORD.pack(offset, timestamp_ns, length, checksum, 0, check)
    if count <= _FEW_RECORDS or not _WORD_ARRAYS:
        checksums = [h & _CHECKSUM_MASK for h in hashes]
        checks = [
            same_for_all ^ (o & _CHECKSUM_MASK) ^ (o >> 32) ^ n ^ c for o, n, c in zip(offsets, lengths, checksums)
        ]
        fields = zip(offsets, repeat(timestamp_ns), lengths, checksums, repeat(0), checks)
        return _records_struct(count).pack(*chain.from_iterable(fields))
    offset_words = array("I", array("Q", offsets).tobytes())  # low word, high word, ...
    columns = [
        offset_words[0::2],
        offset_words[1::2],
        array("I", lengths),
        array("I", array("Q", hashes).tobytes())[0::2],  # the low half of each hash
    ]
    words = array("I", bytes(count * RECORD_SIZE))
    words[0::WORDS_PER_RECORD], words[1::WORDS_PER_RECORD] = columns[0], columns[1]
    words[2::WORDS_PER_RECORD] = array("I", [stamp & _CHECKSUM_MASK]) * count
    words[3::WORDS_PER_RECORD] = array("I", [stamp >> 32]) * count
    words[4::WORDS_PER_RECORD], words[5::WORDS_PER_RECORD] = columns[2], columns[3]
    words[7::WORDS_PER_RECORD] = _xor_columns(columns, same_for_all)
    return words.tobytes()


class IndexRecord(NamedTuple):
    offset: int
    timestamp_ns: int
    length: int
    checksum: int

    def pack(self) -> bytes:
        return seal(INDEX_RECORD.pack(self.offset, self.timestamp_ns, self.length, self.checksum, 0))

    @classmethod
    def unpack(cls, record: bytes | memoryview) -> IndexRecord:
        return cls._make(INDEX_RECORD.unpack_from(record)[:4])

    @property
    def end(self) -> int:
        return self.offset + self.length


class Commit(NamedTuple):
    """A topic's commit point (a named tuple: it is read and compared on every produce)."""

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
