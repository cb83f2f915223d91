"""``manage.py recover``: check every message on every volume and repair what can be repaired.

Exit codes: 0 healthy or fully repaired; 1 something is left (messages damaged on every
volume, or problems found by ``--dry-run``); 2 usage errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from queues.conf import conf
from queues.storage import InvalidTopic, Report, Store, TopicNotFound, VolumeError
from queues.storage.report import counted

logger = logging.getLogger("queues.recovery")
BAR_WIDTH = 30
COLUMNS = ("topics", "segments checked", "bytes checked", "bytes written", "repaired", "unrepairable")


class Command(BaseCommand):
    help = (
        "Verify every message on every volume and repopulate lost or damaged copies from the ones "
        "that verify (the last volume holding a message wins). Safe while the server runs. "
        "Exit 0: healthy or fully repaired; 1: something unrepairable (or, with --dry-run, found); 2: usage."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "volumes", nargs="*", metavar="VOLUME",
            help="the volumes, in the server's order (default: $HARAQA_VOLUMES); the last is read from",
        )
        parser.add_argument("--dry-run", action="store_true", help="report what is wrong, change nothing")
        parser.add_argument("--topic", action="append", metavar="T", help="check only topic T (repeatable)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
        parser.add_argument(
            "--quick", action="store_true",
            help="compare structure only (index records, sizes); read message data only where copies disagree",
        )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        """Usage errors exit 2 from the command line (argparse) and from call_command alike."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_error = parser.error

        def error(message: str):
            if parser.called_from_command_line:
                argparse_error(message)
            raise CommandError(f"Error: {message}", returncode=2)

        parser.error = error
        return parser

    def handle(self, *args, **opts) -> None:
        volumes = [os.path.abspath(v) for v in (opts["volumes"] or conf.volumes)]
        if not volumes:
            raise CommandError("no volume given: pass VOLUME arguments or set HARAQA_VOLUMES", returncode=2)
        bar = ProgressBar(self.stderr) if self.stderr.isatty() else ProgressLines(self.stderr)
        try:
            report = Store(volumes).check(
                fix=not opts["dry_run"], topics=opts["topic"], progress=bar, deep=not opts["quick"]
            )
        except (VolumeError, InvalidTopic, TopicNotFound) as exc:
            raise CommandError(str(exc), returncode=2) from None
        bar.close()
        if opts["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
        else:
            self.stdout.write(render(report))
        if not report.ok:
            unrepairable = f"{counted(report.unrepairable, 'message')} unrepairable"
            left = unrepairable if report.lost else "problems found (dry run)"
            if not self._called_from_command_line:
                raise CommandError(left, returncode=1)  # call_command's callers get it as Django's commands fail
            self.stderr.write(left, style_func=_plain)  # an outcome, not a failure of the command: no "CommandError:"
            sys.exit(1)


def render(report: Report) -> str:
    """The report for people: what was wrong, what was lost, then a summary table."""
    lines = []
    if report.problems:
        lines.append("Problems:" if report.fix else "Problems (dry run, nothing changed):")
        lines += [f"  {p.describe()}" for p in report.problems]
    if report.lost:
        lines.append("Unrepairable (refused when consumed):")
        lines += [f"  {lost.describe()}" for lost in report.lost]
    values = (
        str(report.topics), str(report.segments), human_bytes(report.bytes_checked),
        human_bytes(report.bytes_copied), str(report.repaired), str(report.unrepairable),
    )
    widths = [max(len(c), len(v)) for c, v in zip(COLUMNS, values)]
    lines.append("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)))
    lines.append("  ".join(v.rjust(w) for v, w in zip(values, widths)))
    lines.append(f"Result: {report.outcome}")
    return "\n".join(lines)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


class ProgressBar:
    """A one-line bar redrawn in place on a terminal, at most ten times a second."""

    def __init__(self, out: OutputWrapper | TextIO):
        self.out = out
        self.shown = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int, item: str) -> None:
        now = time.monotonic()
        if now - self.shown < 0.1 and done < total:
            return
        self.shown, self.drawn = now, True
        share = done / total if total else 1.0
        filled = int(share * BAR_WIDTH)
        text = f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} {item}"
        self.out.write(text[:160].ljust(80), style_func=_plain, ending="")
        self.out.flush()

    def close(self) -> None:
        if self.drawn:
            self.out.write("", style_func=_plain)


class ProgressLines:
    """Plain lines for pipes and logs: one when a topic starts, with the share done so far."""

    def __init__(self, out: OutputWrapper | TextIO):
        self.out = out
        self.topic: str | None = None

    def __call__(self, done: int, total: int, item: str) -> None:
        topic = item.rsplit(" segment ", 1)[0]
        if topic and topic != self.topic:
            self.topic = topic
            self.out.write(f"checking topic {topic!r} ({done / total if total else 1:.0%} done)", style_func=_plain)

    def close(self) -> None:
        pass


def _plain(text: str) -> str:
    return text  # progress is not an error: no red on stderr


def recover_at_startup(volumes: list[str], deep: bool, out: OutputWrapper) -> Report:
    """What ``serve`` runs before accepting writes: repair every topic, say what was done."""
    started = time.monotonic()
    report = Store(volumes).check(fix=True, deep=deep)
    for line in report.lines():
        logger.warning("startup recovery: %s", line)
    out.write(f"recovery ({'full' if deep else 'quick'}) in {time.monotonic() - started:.1f}s: {report.summary()}")
    return report
