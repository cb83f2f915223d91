"""Fixed-size binary records: the index entry of one message and a topic's commit point.

Index record (32 bytes, little endian), one per message, at ``(id - first_id) * 32`` in
the segment's ``.idx`` file, so finding a message costs one ``pread`` whatever the topic size::

    offset u64 | timestamp_ns i64 | length u32 | data_crc u32 | flags u32 | record_crc u32

Commit record (32 bytes) in the topic's ``.commit`` file on every volume; a message is
visible once the commit of the volume being read counts it::

    next_id u64 | active_segment u64 | data_end u64 | version u32 | record_crc u32

``record_crc`` covers the first 28 bytes, so an all-zero or torn record never validates.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

INDEX_RECORD = struct.Struct("<QqIII")  # record_crc is appended separately
RECORD_SIZE = 32
COMMIT_VERSION = 1
_COMMIT = struct.Struct("<QQQI")
_CRC = struct.Struct("<I")
LENGTH_WORD = 4  # the length field as the 5th u32 word of a record, for memoryview casts
OFFSET_WORDS = (0, 1)


def seal(body: bytes) -> bytes:
    """Append the crc of ``body`` (28 bytes) to make a 32-byte record."""
    return body + _CRC.pack(zlib.crc32(body))


def is_sealed(record: bytes | memoryview) -> bool:
    return len(record) == RECORD_SIZE and _CRC.unpack_from(record, 28)[0] == zlib.crc32(record[:28])


@dataclass(frozen=True)
class IndexRecord:
    offset: int
    timestamp_ns: int
    length: int
    data_crc: int

    def pack(self) -> bytes:
        return seal(INDEX_RECORD.pack(self.offset, self.timestamp_ns, self.length, self.data_crc, 0))

    @classmethod
    def unpack(cls, record: bytes | memoryview) -> IndexRecord:
        offset, timestamp_ns, length, data_crc, _flags = INDEX_RECORD.unpack_from(record)
        return cls(offset, timestamp_ns, length, data_crc)

    @property
    def end(self) -> int:
        return self.offset + self.length


def pack_index(offsets: list[int], lengths: list[int], crcs: list[int], timestamp_ns: int) -> bytes:
    """Pack the index records of a batch part in one buffer."""
    pack, crc32, pack_crc = INDEX_RECORD.pack, zlib.crc32, _CRC.pack
    out = bytearray()
    for offset, length, crc in zip(offsets, lengths, crcs):
        body = pack(offset, timestamp_ns, length, crc, 0)
        out += body
        out += pack_crc(crc32(body))
    return bytes(out)


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
