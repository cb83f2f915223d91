"""Check and recovery runs started from the admin, in the background, visible to every worker.

A run may outlast a request, so it runs in a daemon thread of the worker that received
the POST. Its state lives in ``<DATA_DIR>/admin-recovery.json`` (written atomically), so
whichever gunicorn worker serves the status poll can read it. One run at a time: the
running thread holds an ``flock`` on ``admin-recovery.lock``; the kernel drops it if the
worker dies, which is how a reader tells a dead run ("interrupted") from a live one.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from queues import metrics
from queues.conf import conf, get_store
from queues.storage import Report

STATE_FILE = "admin-recovery.json"
LOCK_FILE = "admin-recovery.lock"


class RunInProgress(Exception):
    """Another check or recovery is running (in this or another process)."""


def _data_dir() -> Path:
    path = Path(conf.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_state() -> dict[str, Any] | None:
    """The latest run's state, or None if no run was ever started here."""
    try:
        state = json.loads((_data_dir() / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    if state.get("state") == "running" and not _lock_is_held():
        state["state"] = "interrupted"
    return state


def start_run(fix: bool, user: str) -> dict[str, Any]:
    """Start ``Store.check(fix)`` in a background thread; return its first state.

    Raises RunInProgress if a run is going on.
    """
    fd = os.open(_data_dir() / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInProgress("a check or recovery is already running") from None
    state = {
        "id": uuid.uuid4().hex,
        "mode": "recover" if fix else "check",
        "state": "running",
        "user": user,
        "started_at": time.time(),
        "finished_at": None,
        "progress": {"done": 0, "total": None, "item": ""},
        "report": None,
        "error": None,
    }
    try:
        _write_state(state)
        threading.Thread(target=_run, args=(fd, state, fix), name=f"admin-{state['mode']}", daemon=True).start()
    except BaseException:
        os.close(fd)
        raise
    return state


def _run(lock_fd: int, state: dict[str, Any], fix: bool) -> None:
    try:
        report = run_check(fix, _progress_writer(state))
        state.update(state="done", report=report_to_json(report))
    except Exception as exc:  # the page must show why a run failed; the worker stays up
        state.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        state["finished_at"] = time.time()
        try:
            _write_state(state)
        finally:
            os.close(lock_fd)  # releases the flock, even if the state could not be written


def run_check(fix: bool, progress: Callable[..., None]) -> Report:
    """The engine's check (see queues.storage.recovery), with progress reported and counted
    in the recovery metrics."""
    report = get_store().check(fix=fix, progress=progress)
    metrics.record_recovery(report)
    return report


def _progress_writer(state: dict[str, Any], interval: float = 0.25) -> Callable[..., None]:
    """A progress callback that records at most one state write per ``interval``."""
    last = [0.0]

    def progress(done: int, total: int | None = None, item: str = "") -> None:
        state["progress"] = {"done": done, "total": total, "item": item}
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            _write_state(state)

    return progress


def report_to_json(report: Report) -> dict:
    """The engine's report as plain JSON values, as the run's state file keeps it."""
    return json.loads(json.dumps(report.to_dict(), default=str))


def _lock_is_held() -> bool:
    try:
        fd = os.open(_data_dir() / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _write_state(state: dict[str, Any]) -> None:
    path = _data_dir() / STATE_FILE
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
