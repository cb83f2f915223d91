"""System checks (``manage.py check``, and before ``serve`` starts): the volumes must be usable.

    haraqa.E001  a volume, or the directory it would be created in, is not writable
    haraqa.E002  a volume path exists but is not a directory
    haraqa.E003  no volume is configured
    haraqa.W001  a volume is listed twice
"""

from __future__ import annotations

import os

from django.core.checks import Error, Warning, register

from queues.conf import conf


@register("haraqa")
def check_volumes(app_configs=None, **kwargs) -> list:
    volumes = [os.path.abspath(v) for v in conf.volumes]
    if not volumes:
        return [Error("no volume is configured", hint="pass VOLUME arguments or set HARAQA_VOLUMES", id="haraqa.E003")]
    problems: list = []
    for volume in sorted(set(volumes)):
        if volumes.count(volume) > 1:
            problems.append(Warning(f"volume {volume} is listed {volumes.count(volume)} times", id="haraqa.W001"))
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
