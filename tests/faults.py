"""Fault injection on real files, shared by the storage, admin and end-to-end tests."""

from __future__ import annotations


def flip_byte(path: str, offset: int, mask: int = 0x5A) -> None:
    """XOR the byte at ``offset`` of ``path`` with ``mask``, in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ mask]))
