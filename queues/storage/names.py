"""Topic and consumer-group names: normalisation and the safety rules.

A topic name maps to a relative directory under every volume, so anything that
could escape the volume or collide with the engine's own files is refused.
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import quote, unquote

from .errors import InvalidGroup, InvalidTopic
from .layout import STORAGE_FILE

MAX_TOPIC_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_GROUP_FILE_BYTES = 200  # under the usual 255-byte limit on a file name


def _segment_is_safe(segment: str) -> bool:
    return (
        segment != ""
        and not segment.startswith(".")
        and "\\" not in segment
        and not any(ord(ch) < 32 or ord(ch) == 127 for ch in segment)
        and len(segment.encode("utf-8", "surrogatepass")) <= MAX_SEGMENT_BYTES
        and not STORAGE_FILE.match(segment)
    )


def go_lower(name: str) -> str:
    """``name`` lower-cased as Go's ``strings.ToLower`` does it (haraqa's server and its client),
    letter by letter: ``Σ`` is always ``σ`` and ``İ`` is ``i``, where Python's ``lower`` gives
    ``ς`` at the end of a word and ``i`` plus a combining dot."""
    if name.isascii():
        return name.lower()
    return "".join("i" if letter == "\u0130" else letter.lower() for letter in name)


@functools.lru_cache(maxsize=4096)  # names repeat on every request; refusals are not cached
def normalize_topic(name: str) -> str:
    """Lower-case ``name`` as haraqa does and check it is a safe relative path; raise InvalidTopic."""
    topic = go_lower(name)
    if not topic or len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise InvalidTopic("invalid topic")
    if not all(_segment_is_safe(segment) for segment in topic.split("/")):
        raise InvalidTopic("invalid topic")
    return topic


def group_file(group: str) -> str:
    """The file name keeping consumer group ``group``'s offset. Any name is a group, as in haraqa
    (``team/worker``, ``.hidden``, 300 characters): the file name is the name percent-encoded as
    UTF-8, dots too (so no group file is hidden or looks like a temporary file), and one too long
    for a file name keeps its start and a hash of the whole. Raises InvalidGroup for ``""``."""
    if not group:
        raise InvalidGroup("invalid header: X-Consumer-Group")
    encoded = quote(group, safe="").replace(".", "%2E")
    if len(encoded) > MAX_GROUP_FILE_BYTES:
        digest = hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        encoded = f"{encoded[: MAX_GROUP_FILE_BYTES - len(digest) - 1]}~{digest}"
    return encoded


def group_name(file_name: str) -> str:
    """The group a ``group_file`` name stands for, to show it (a shortened name ends in its hash)."""
    return unquote(file_name)
