"""haraqa's storage engine: append-only segment files replicated over volumes.

Pure Python, plus xxhash for checksums and RE2 for topic filters; Django builds a ``Store``
through ``queues.conf``.

Guarantees:
- A produce is visible only once it is on every volume, and never partly.
- Ids are contiguous from 0 per topic and assigned under an OS-level lock from what
  is on disk, so gunicorn workers and separate servers sharing volumes never collide.
- ``kill -9`` of any process loses no acknowledged batch; with ``fsync='batch'`` an
  acknowledged batch also survives power loss.
- ``Store.check(fix=True)`` repopulates a lost or damaged volume from the others, each
  message from a copy whose checksums verify; a message damaged on every volume is
  reported and never served (see ``recovery``). Reads fall back to another volume when
  the last one's copy is missing or damaged.
"""

from __future__ import annotations

from .consume import BoundedFile, MessageRange
from .errors import (
    BatchTooLarge,
    Corruption,
    GroupOffsetCorrupt,
    InvalidBody,
    InvalidGroup,
    InvalidInput,
    InvalidRegex,
    InvalidSizes,
    InvalidTopic,
    MessageDamaged,
    MessageIdTruncated,
    NoContent,
    StorageError,
    TopicExists,
    TopicNotFound,
    VolumeError,
    VolumesOutOfSync,
)
from .names import go_lower, normalize_topic
from .report import Lost, Problem, Report
from .store import Offsets, Store

__all__ = [
    "BatchTooLarge",
    "BoundedFile",
    "Corruption",
    "GroupOffsetCorrupt",
    "InvalidBody",
    "InvalidGroup",
    "InvalidInput",
    "InvalidRegex",
    "InvalidSizes",
    "InvalidTopic",
    "Lost",
    "MessageDamaged",
    "MessageIdTruncated",
    "MessageRange",
    "NoContent",
    "Offsets",
    "Problem",
    "Report",
    "StorageError",
    "Store",
    "TopicExists",
    "TopicNotFound",
    "VolumeError",
    "VolumesOutOfSync",
    "go_lower",
    "normalize_topic",
]
