"""What a topic watch reads: each watched topic's commit record, on the first volume that has
it, polled cheaply (``CommitRecord``), and the topics of one watch checked when it begins
(``TopicWatcher``). The websocket side is ``queues.api.watch``."""

from __future__ import annotations

import os

from .errors import Corruption, TopicNotFound
from .handles import still_kept
from .layout import TopicDir, file_id, read_commit_fd
from .records import RECORD_SIZE

DAMAGED = -1  # a topic's commit record is unreadable on every volume that has it


class CommitRecord:
    """A watched topic's commit record, read from the first volume that has it (the last
    volume comes first, as for reads) and kept open there: a poll that finds the same bytes
    costs an fstat and a pread, a fifth of reading it by path."""

    def __init__(self, dirs: list[TopicDir]):
        self.dirs = dirs
        self.kept = None  # the commit file read last (a descriptor and its file's id), and its path
        self.path = ""
        self.raw = b""  # the record as last read

    def may_have_changed(self) -> bool:
        try:
            self.kept = still_kept(self.kept, self.path)  # a deleted or replaced commit file: read by path again
            return self.kept is None or os.pread(self.kept[0], RECORD_SIZE, 0) != self.raw
        except OSError:
            self.close()
            return True

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
