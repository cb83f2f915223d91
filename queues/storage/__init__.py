"""haraqa's storage engine: append-only segment files replicated over volumes.

Pure Python, standard library only; Django builds a ``Store`` through ``queues.conf``.

Guarantees:
- A produce is visible only once it is on every volume, and never partly.
- Ids are contiguous from 0 per topic and assigned under an OS-level lock from what
  is on disk, so gunicorn workers and separate servers sharing volumes never collide.
- ``kill -9`` of any process loses no acknowledged batch; with ``fsync='batch'`` an
  acknowledged batch also survives power loss.
"""

from __future__ import annotations

from .consume import BoundedFile, MessageRange
from .errors import (
    BatchTooLarge,
    Corruption,
    InvalidBody,
    InvalidGroup,
    InvalidInput,
    InvalidSizes,
    InvalidTopic,
    MessageIdTruncated,
    NoContent,
    StorageError,
    TopicExists,
    TopicNotFound,
    VolumeError,
    VolumesOutOfSync,
)
from .names import normalize_topic
from .store import Offsets, Store

__all__ = [
    "BatchTooLarge",
    "BoundedFile",
    "Corruption",
    "InvalidBody",
    "InvalidGroup",
    "InvalidInput",
    "InvalidSizes",
    "InvalidTopic",
    "MessageIdTruncated",
    "MessageRange",
    "NoContent",
    "Offsets",
    "StorageError",
    "Store",
    "TopicExists",
    "TopicNotFound",
    "VolumeError",
    "VolumesOutOfSync",
    "normalize_topic",
]
