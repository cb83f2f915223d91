"""What a check found and what it repaired: the value ``Store.check`` returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as inclusive ``(first, last)`` runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def counted(count: int, noun: str) -> str:
    """``1 message``, ``2 messages``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_ranges(runs: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def outcome(healthy: bool, ok: bool, lost: bool) -> str:
    """The one word for a check run, wherever it is shown: healthy, repaired, unrepairable
    (messages damaged on every volume) or problems found (by a dry run, or left unrepaired)."""
    if healthy:
        return "healthy"
    if ok:
        return "repaired"
    return "unrepairable" if lost else "problems found"


@dataclass
class Problem:
    """One thing found wrong on one volume (``volume`` None: on every volume)."""

    what: str
    topic: str | None = None
    volume: str | None = None
    segment: int | None = None  # first id of the segment concerned
    ids: list[tuple[int, int]] = field(default_factory=list)  # message ids concerned, as runs
    repaired: bool = False

    def describe(self) -> str:
        where = " ".join(
            part
            for part in (
                self.volume or "",
                f"topic {self.topic!r}" if self.topic is not None else "",
                f"segment {self.segment}" if self.segment is not None else "",
            )
            if part
        )
        ids = f" (ids {format_ranges(self.ids)})" if self.ids else ""
        return f"{where}: {self.what}{ids}{' - repaired' if self.repaired else ''}"


@dataclass
class Lost:
    """Messages no volume holds intact: marked damaged, never served."""

    topic: str
    first_id: int
    last_id: int

    def describe(self) -> str:
        if self.first_id == self.last_id:
            return f"topic {self.topic!r}: message {self.first_id} is damaged on every volume (unrepairable)"
        ids = f"{self.first_id}..{self.last_id}"
        return f"topic {self.topic!r}: messages {ids} are damaged on every volume (unrepairable)"


@dataclass
class Report:
    volumes: list[str]
    fix: bool
    deep: bool
    topics: int = 0
    segments: int = 0
    bytes_checked: int = 0  # message bytes read from segment files to verify them
    bytes_copied: int = 0  # bytes written by repairs (copies, and the marks on damaged messages)
    problems: list[Problem] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)

    @property
    def repaired(self) -> int:
        return sum(p.repaired for p in self.problems)

    @property
    def unrepairable(self) -> int:
        """How many messages are lost on every volume."""
        return sum(lost.last_id - lost.first_id + 1 for lost in self.lost)

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.lost

    @property
    def ok(self) -> bool:
        """Nothing lost, and nothing left to repair."""
        return not self.lost and all(p.repaired for p in self.problems)

    def lines(self) -> list[str]:
        return [p.describe() for p in self.problems] + [lost.describe() for lost in self.lost]

    @property
    def outcome(self) -> str:
        return outcome(self.healthy, self.ok, bool(self.lost))

    def summary(self) -> str:
        return (
            f"{self.outcome}: {counted(self.topics, 'topic')}, {counted(self.segments, 'segment')} checked, "
            f"{counted(self.bytes_checked, 'message byte')} checked, {counted(self.bytes_copied, 'byte')} written, "
            f"{self.repaired} of {counted(len(self.problems), 'problem')} repaired, "
            f"{counted(self.unrepairable, 'message')} unrepairable"
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(repaired=self.repaired, unrepairable=self.unrepairable, healthy=self.healthy, ok=self.ok,
                    outcome=self.outcome)
        return data
