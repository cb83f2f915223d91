"""Exceptions raised by the storage engine.

    StorageError                     root: anything the engine raises on purpose
    ├── InvalidInput                 the caller asked for something malformed
    │   ├── InvalidTopic             unsafe or empty topic name
    │   ├── InvalidSizes             bad X-Sizes list (negative, too many, over the limit)
    │   ├── InvalidBody              body length differs from the sizes
    │   ├── BatchTooLarge            batch above the configured maximum
    │   ├── InvalidGroup             unsafe consumer group name
    │   └── InvalidRegex             a topic filter RE2 cannot compile
    ├── TopicNotFound
    ├── TopicExists
    ├── NoContent                    nothing stored at or after the requested id
    ├── MessageIdTruncated           the id was removed by a truncate
    ├── Corruption                   on-disk data fails its checks
    │   ├── MessageDamaged           a message recovery found damaged on every volume
    │   └── GroupOffsetCorrupt       a consumer group's offset is unreadable on every volume
    └── VolumeError                  a volume cannot be read or written
        └── VolumesOutOfSync         volumes disagree beyond a torn tail: run recovery
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidInput(StorageError):
    pass


class InvalidTopic(InvalidInput):
    pass


class InvalidSizes(InvalidInput):
    pass


class InvalidBody(InvalidInput):
    pass


class BatchTooLarge(InvalidInput):
    pass


class InvalidGroup(InvalidInput):
    pass


class InvalidRegex(InvalidInput):
    """haraqa's text, ``invalid regex``; ``reason`` says what RE2 found wrong."""

    def __init__(self, reason: str):
        super().__init__("invalid regex")
        self.reason = reason


class TopicNotFound(StorageError):
    def __init__(self, message: str = "topic does not exist") -> None:  # haraqa's text
        super().__init__(message)


class TopicExists(StorageError):
    pass


class NoContent(StorageError):
    pass


class MessageIdTruncated(StorageError):
    def __init__(self, first_id: int):
        super().__init__(f"message id truncated, first stored id is {first_id}")
        self.first_id = first_id


class Corruption(StorageError):
    pass


class MessageDamaged(Corruption):
    def __init__(self, topic: str, message_id: int):
        super().__init__(
            f"message {message_id} of topic {topic!r} is damaged on every volume and cannot be served; "
            f"consume from {message_id + 1}"
        )
        self.message_id = message_id


class GroupOffsetCorrupt(Corruption):
    def __init__(self) -> None:
        super().__init__("unable to get consumer offset")  # haraqa's text


class VolumeError(StorageError):
    pass


class VolumesOutOfSync(VolumeError):
    pass
