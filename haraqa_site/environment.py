"""Values from environment variables and command-line flags, checked the same way for both.

A bad flag is an argparse usage error; a bad variable raises ``SettingError``, which
``manage.py`` prints as one line naming the variable (exit 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")
SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class SettingError(ImproperlyConfigured):
    """A setting's value that cannot be used; the message names the setting."""


def number(kind: Callable[[str], T], minimum: T, maximum: T | None = None, *, also: tuple = (),
           meaning: str) -> Callable[[str], T]:
    """A parser of ``kind`` values from ``minimum`` to ``maximum`` (and the values in ``also``);
    ``meaning`` says what is allowed, for the error."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is not None and (value in also or (value >= minimum and (maximum is None or value <= maximum))):
            return value
        raise argparse.ArgumentTypeError(f"{text!r} is not {meaning}")

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text in allowed:
            return text
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)}")

    return parse


def switch(text: str) -> bool:
    value = SWITCH_WORDS.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of 1/0, true/false, yes/no, on/off")
    return value


POSITIVE = number(int, 1, meaning="a whole number of at least 1")
PORT = number(int, 1, 65535, meaning="a port number from 1 to 65535")
LIMIT = number(int, 1, also=(-1, 0), meaning="-1 or 0 (no limit), or a whole number of at least 1")
MAX_SECONDS = 2_147_483.0  # what the kernel's TCP_USER_TIMEOUT (milliseconds in an int) can hold
SECONDS = number(float, 0.0, MAX_SECONDS, meaning=f"a number of seconds from 0 to {MAX_SECONDS:.0f}")


def from_environment(name: str, default: T, parse: Callable[[str], T]) -> T:
    """The variable ``name`` parsed, or ``default`` when it is not set or blank."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise SettingError(f"{name}: {exc}") from None


def path_list(text: str) -> list[str]:
    """``:``-separated paths (``os.pathsep``), empty items dropped."""
    return [item for item in text.split(os.pathsep) if item]


def name_list(text: str) -> list[str]:
    """``,``-separated names, spaces around them and empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]
