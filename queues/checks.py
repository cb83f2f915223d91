"""System checks (``manage.py check``): the volumes must be usable. ``serve`` refuses the
same volumes through ``Store.prepare_volumes``, with its own messages; ``recover`` only those it
cannot check (a file in place of a volume, overlapping volumes).

    haraqa.E001  a volume, or the directory it would be created in, is not writable
    haraqa.E002  a volume path exists but is not a directory
    haraqa.E003  no volume is configured
    haraqa.E004  two volumes are one directory (the same path, a symlink or a bind mount of it)
    haraqa.E005  a volume lies inside another (its directories would be read as the other's topics)
"""

from __future__ import annotations

import os

from django.core.checks import Error, register

from queues.conf import conf
from queues.storage.layout import INSIDE, SAME_DIRECTORY, overlapping_volumes

OVERLAP_IDS = {SAME_DIRECTORY: "haraqa.E004", INSIDE: "haraqa.E005"}
OVERLAP_HINTS = {SAME_DIRECTORY: "each volume keeps a full copy of every topic: give each its own directory"}


@register("haraqa")
def check_volumes(app_configs=None, **kwargs) -> list:
    if not conf.volumes:
        return [Error("no volume is configured", hint="pass VOLUME arguments or set HARAQA_VOLUMES", id="haraqa.E003")]
    problems = [
        Error(problem, hint=OVERLAP_HINTS.get(kind), id=OVERLAP_IDS[kind])
        for kind, problem in overlapping_volumes(conf.volumes)
    ]
    for volume in dict.fromkeys(os.path.abspath(v) for v in conf.volumes):
        existing = _nearest_existing(volume)
        what = f"volume {volume}" if existing == volume else f"{existing}, where volume {volume} would be created,"
        if not os.path.isdir(existing):
            problems.append(Error(f"{what} is not a directory", id="haraqa.E002"))
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(
                Error(f"{what} is not writable", hint="fix its owner or permissions, or choose another volume", id="haraqa.E001")
            )
    return problems


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
