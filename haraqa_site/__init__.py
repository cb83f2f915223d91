"""The Django project. Importing it first thing (before any Prometheus metric exists) lets it
make prometheus_client's multiprocess mode cheaper, see ``_cache_metrics_pid``."""

from __future__ import annotations

import os


def _cache_metrics_pid() -> None:
    """prometheus_client's multiprocess values call ``os.getpid()`` (a system call) on every
    update to notice a fork; a request makes dozens of updates. A pid cached per process and
    refreshed in the child after every fork gives the same answer without the calls. Only
    valid if done before the first metric value exists, hence here."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import values

    pid = [os.getpid()]

    def refresh() -> None:
        pid[0] = os.getpid()

    os.register_at_fork(after_in_child=refresh)
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: pid[0])


_cache_metrics_pid()
