"""Record formats: the column-wise packing agrees with the record-by-record one."""

from __future__ import annotations

import os
import random
from itertools import accumulate

import pytest

from queues.storage import records
from queues.storage.records import (
    RECORD_SIZE,
    IndexRecord,
    invalid_records,
    is_sealed,
    message_checksum,
    message_hash,
    pack_index,
    partial_checksum,
)


@pytest.mark.parametrize("count", [1, 15, 16, 17, 1000])
def test_column_packing_matches_record_packing(count, monkeypatch):
    rng = random.Random(count)
    lengths = [rng.randrange(0, 5000) for _ in range(count)]
    offsets = list(accumulate(lengths[:-1], initial=rng.randrange(1 << 40)))
    checksums = [rng.getrandbits(64) for _ in range(count)]
    packed = pack_index(offsets, lengths, checksums, -123456789)
    monkeypatch.setattr(records, "_FEW_RECORDS", 0)
    assert pack_index(offsets, lengths, checksums, -123456789) == packed
    monkeypatch.setattr(records, "_FEW_RECORDS", 10**6)
    assert pack_index(offsets, lengths, checksums, -123456789) == packed
    assert invalid_records(packed) == []
    monkeypatch.setattr(records, "_WORD_ARRAYS", False)  # as on a big-endian machine
    assert invalid_records(packed) == []
    assert invalid_records(packed[:-1] + bytes([packed[-1] ^ 1])) == [count - 1]
    for i in (0, count - 1):
        record = IndexRecord.unpack(packed[i * RECORD_SIZE : (i + 1) * RECORD_SIZE])
        assert (record.offset, record.length, record.checksum, record.timestamp_ns) == (
            offsets[i], lengths[i], checksums[i] & 0xFFFFFFFF, -123456789)


@pytest.mark.parametrize("word_arrays", [True, False])
def test_every_single_flipped_bit_and_a_zeroed_record_are_caught(word_arrays, monkeypatch):
    monkeypatch.setattr(records, "_WORD_ARRAYS", word_arrays and records._WORD_ARRAYS)
    packed = pack_index([0, 10, 30], [10, 20, 5], [1, 2, 3], 42)
    for bit in range(3 * RECORD_SIZE * 8):
        damaged = bytearray(packed)
        damaged[bit // 8] ^= 1 << (bit % 8)
        assert invalid_records(damaged) == [bit // 8 // RECORD_SIZE]
    assert invalid_records(packed[:RECORD_SIZE] + bytes(RECORD_SIZE)) == [1]
    assert not is_sealed(bytes(RECORD_SIZE))


def test_a_checksum_in_pieces_equals_the_whole():
    data = os.urandom(10_000)
    assert message_checksum(data) == message_hash(data) & 0xFFFFFFFF
    partial = partial_checksum(data[:3])
    partial = partial_checksum(data[3:7000], partial)
    assert message_checksum(data[7000:], partial) == message_checksum(data)
    assert message_checksum(data) != message_checksum(data[:-1] + bytes([data[-1] ^ 1]))
