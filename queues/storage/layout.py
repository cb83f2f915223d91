"""Where a topic's files live on one volume, and the small file operations on them.

    <volume>/<topic>/.commit                  commit record: what is visible
    <volume>/<topic>/<first id:020d>.dat      message bytes back to back
    <volume>/<topic>/<first id:020d>.idx      one 32-byte index record per message
    <volume>/<topic>/.groups/<group>          a consumer group's next id
    <volume>/.locks/<sha1(topic)>.lock        the topic's lock file (see locks.py)

Nested topics are nested directories; a directory is a topic iff it holds ``.commit``.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator

from .errors import Corruption
from .records import RECORD_SIZE, Commit

COMMIT_FILE = ".commit"
GROUPS_DIR = ".groups"
SEGMENT_FILE = re.compile(r"^(\d{20})\.idx$")
STORAGE_FILE = re.compile(r"^\d{20}\.(dat|idx)$")  # a segment's files; no topic name may look like one
TEMP_FILE = re.compile(r"\.\d+\.tmp$")  # temp_path's ending; no group name may end like it
_GROUP = struct.Struct("<QI")
_TORN_READ_RETRIES = 5


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    written = os.pwrite(fd, data, offset)
    if written == len(data):  # short writes are rare: a signal, a full disk
        return
    view = memoryview(data)[written:]
    offset += written
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def pread_file(path: str, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of ``path`` from ``offset``; empty if the file is missing."""
    try:
        with open(path, "rb", buffering=0) as f:
            return pread_exact(f.fileno(), size, offset)
    except FileNotFoundError:
        return b""


FileId = tuple[int, int]  # (st_dev, st_ino): a file, whatever path it is reached by


def file_id(fd: int) -> FileId:
    opened = os.fstat(fd)
    return opened.st_dev, opened.st_ino


def stat_if_same(path: str, expected: FileId) -> os.stat_result | None:
    """``path``'s stat if it is still the file ``expected``; None once that file was removed or
    replaced, or another took its place through a mount or a changed symlink (a new disk where
    a volume was)."""
    try:
        named = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return named if (named.st_dev, named.st_ino) == expected else None


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: str) -> str:
    """Where ``path`` is written before it is renamed into place; recovery removes such files
    a crashed process left (``TEMP_FILE``)."""
    return f"{path}.{os.getpid()}.tmp"


def write_file_atomically(path: str, data: bytes, durable: bool) -> None:
    """Write ``path`` through a temporary name and a rename, so it is never seen half written."""
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        pwrite_all(fd, data, 0)
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(os.path.dirname(path))


def read_commit_fd(fd: int, topic: str) -> Commit:
    """The commit record in the open commit file ``fd`` of ``topic``; a read that races a
    writer is retried. Raises Corruption."""
    for _ in range(_TORN_READ_RETRIES):
        commit = Commit.unpack(os.pread(fd, RECORD_SIZE, 0))
        if commit is not None:
            return commit
    raise Corruption(f"corrupt commit record in topic {topic!r}")


class TopicDir:
    """One topic's directory on one volume (paths are built once: they are on the hot path)."""

    __slots__ = ("root", "topic", "path", "commit_path")

    def __init__(self, root: str, topic: str):
        self.root = root
        self.topic = topic
        self.path = f"{root}/{topic}"
        self.commit_path = f"{self.path}/{COMMIT_FILE}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicDir) and (self.root, self.topic) == (other.root, other.topic)

    def __hash__(self) -> int:
        return hash((self.root, self.topic))

    def __repr__(self) -> str:
        return f"TopicDir({self.root!r}, {self.topic!r})"

    def segment_path(self, first_id: int, suffix: str) -> str:
        return f"{self.path}/{first_id:020d}.{suffix}"

    def group_path(self, group_file: str) -> str:
        """Where a consumer group's offset is kept; ``group_file`` is ``names.group_file``'s."""
        return f"{self.path}/{GROUPS_DIR}/{group_file}"

    def exists(self) -> bool:
        return os.path.isfile(self.commit_path)

    def read_commit(self) -> Commit | None:
        """The volume's commit record, or None if the topic is not on this volume."""
        try:
            fd = os.open(self.commit_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return read_commit_fd(fd, self.topic)
        finally:
            os.close(fd)

    def write_commit(self, commit: Commit, durable: bool) -> None:
        fd = os.open(self.commit_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            pwrite_all(fd, commit.pack(), 0)
            if durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def segments(self) -> list[int]:
        """First ids of the segments on disk, sorted."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(SEGMENT_FILE.match, names) if m)

    def committed_segments(self, commit: Commit) -> list[int]:
        """First ids of the segments ``commit`` counts (a crashed writer may leave a newer one)."""
        return [s for s in self.segments() if s <= commit.active_segment]

    def read_group(self, group_file: str) -> int | None:
        try:
            with open(self.group_path(group_file), "rb") as f:
                raw = f.read(_GROUP.size)
        except FileNotFoundError:
            return None
        if len(raw) != _GROUP.size:
            return None
        next_id, crc = _GROUP.unpack(raw)
        return next_id if crc == zlib.crc32(raw[:8]) else None

    def write_group(self, group_file: str, next_id: int, durable: bool) -> None:
        os.makedirs(os.path.join(self.path, GROUPS_DIR), exist_ok=True)
        value = struct.pack("<Q", next_id)
        write_file_atomically(self.group_path(group_file), value + struct.pack("<I", zlib.crc32(value)), durable)


SAME_DIRECTORY, INSIDE = "same directory", "inside"


def first_stored_id(segments: list[int], commit: Commit) -> int:
    """The id of the first message still stored: the first committed segment's, or the active
    one's (the next id to be written) when a truncate or loss left none before it."""
    return segments[0] if segments else commit.active_segment


def overlapping_volumes(volumes: list[str]) -> list[tuple[str, str]]:
    """(SAME_DIRECTORY or INSIDE, description) for each pair of volumes that would share files:
    one directory under two names (also a symlink or bind mount), or one volume inside another,
    whose directories would be read as the other's topics."""
    problems = []
    for index, first in enumerate(volumes):
        for second in volumes[index + 1 :]:
            if _same_directory(first, second):
                problems.append((SAME_DIRECTORY, f"volumes {first} and {second} are the same directory"))
                continue
            for outer, inner in ((first, second), (second, first)):
                real_outer = os.path.realpath(outer)
                if os.path.commonpath([real_outer, os.path.realpath(inner)]) == real_outer:
                    problems.append((INSIDE, f"volume {inner} is inside volume {outer}"))
    return problems


def _same_directory(first: str, second: str) -> bool:
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)  # a bind mount of one on the other's path, say
    except OSError:
        return False  # one does not exist yet


def walk_topics(root: str) -> Iterator[str]:
    """Every topic name stored under ``root`` (directories holding a commit file)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel) if rel else root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name == COMMIT_FILE and rel:
                yield rel
            elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                stack.append(f"{rel}/{entry.name}" if rel else entry.name)
