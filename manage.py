#!/usr/bin/env python
"""Django's command-line utility for haraqa_site."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haraqa_site.settings")
    from django.core.management import execute_from_command_line

    from haraqa_site.environment import SettingError

    try:
        execute_from_command_line(sys.argv)
    except SettingError as exc:  # a bad environment variable: one line, not a traceback
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
