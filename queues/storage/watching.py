"""What a topic watch reads: each watched topic's commit record, on the first volume that has
it, polled cheaply (``CommitRecord``), and the topics of one watch checked when it begins
(``TopicWatcher``). The websocket side is ``queues.api.watch``."""

from __future__ import annotations

import os
import time

from .errors import Corruption, TopicNotFound
from .layout import TopicDir, file_id, read_commit_fd, stat_if_same
from .records import RECORD_SIZE

DAMAGED = -1  # a topic's commit record is unreadable on every volume that has it
PATH_CHECK_SECONDS = 1.0  # how soon a poll notices another file at the path (a new disk); a deleted one, at once


class CommitRecord:
    """A watched topic's commit record, read from the first volume that has it (the last
    volume comes first, as for reads) and kept open there: a poll that finds the same bytes
    costs an fstat and a pread, half of reading it by path. (A stat of the path too, each poll,
    cost 10% of a core more for 2,000 idle watches: it is done once a second.)"""

    def __init__(self, dirs: list[TopicDir]):
        self.dirs = dirs
        self.kept = None  # the commit file read last (a descriptor and its file's id), and its path
        self.path = ""
        self.path_checked = 0.0  # when the kept file was last found at its path (time.monotonic)
        self.raw = b""  # the record as last read

    def may_have_changed(self) -> bool:
        try:
            if self.kept is not None and self._replaced():
                self.close()  # read by path again
            return self.kept is None or os.pread(self.kept[0], RECORD_SIZE, 0) != self.raw
        except OSError:
            self.close()
            return True

    def _replaced(self) -> bool:
        """Whether the kept file is no longer the topic's: deleted (checked each poll) or another
        file at its path, a re-created topic or a new disk (checked once a second)."""
        if not os.fstat(self.kept[0]).st_nlink:
            return True
        now = time.monotonic()
        if now < self.path_checked + PATH_CHECK_SECONDS:
            return False
        self.path_checked = now
        return stat_if_same(self.path, self.kept[1]) is None

    def read(self, keep: bool = True, strict: bool = False) -> int | None:
        """The committed next id: None if no volume has the topic, DAMAGED if none can be read.
        ``keep``: keep the file open for the next ``may_have_changed``. ``strict``: a commit file
        that cannot be opened (out of descriptors, say) raises its OSError instead of counting as
        damaged (a poll just tries again later)."""
        self.close()
        damaged = False
        for topic_dir in self.dirs:
            try:
                fd = os.open(topic_dir.commit_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError:
                if strict:
                    raise
                damaged = True
                continue
            try:
                commit = read_commit_fd(fd, topic_dir.topic)
            except (Corruption, OSError):
                os.close(fd)
                damaged = True
                continue
            self.raw = commit.pack()
            if keep:
                self.kept, self.path = (fd, file_id(fd)), topic_dir.commit_path
                self.path_checked = time.monotonic()
            else:
                os.close(fd)
            return commit.next_id
        return DAMAGED if damaged else None

    def close(self) -> None:
        if self.kept is not None:
            os.close(self.kept[0])
            self.kept = None


class TopicWatcher:
    """The topics of one watch, with their committed next ids when it was asked for."""

    def __init__(self, volumes: list[str], topics: list[str]):
        """``topics`` are normalised names. Raises TopicNotFound if one is on no volume,
        Corruption if no volume's commit record of one is sound, OSError if one cannot be opened."""
        self.dirs = {topic: [TopicDir(volume, topic) for volume in reversed(volumes)] for topic in topics}
        self.next_ids = {}
        for topic, dirs in self.dirs.items():
            self.next_ids[topic] = CommitRecord(dirs).read(keep=False, strict=True)
        if any(next_id is None for next_id in self.next_ids.values()):
            raise TopicNotFound()
        unreadable = [topic for topic, next_id in self.next_ids.items() if next_id == DAMAGED]
        if unreadable:
            raise Corruption(f"the commit record of topic {unreadable[0]!r} is damaged on every volume: run recovery")
