"""Settings: bad values in flags and environment variables are refused with one line, and
``queues.conf`` reads HARAQA_* settings once, and again whenever they change."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from queues.conf import conf, get_store
from queues.management.commands.serve import Command

from ..conftest import REPO


def manage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, cwd=REPO,
    )


@pytest.mark.parametrize("flag, value, complaint", [
    ("--workers", "abc", "'abc' is not a whole number of at least 1"),
    ("--port", "70000", "'70000' is not a port number from 1 to 65535"),
    ("--fsync", "always", "'always' is not one of never, batch"),
    ("--limit", "-5", "'-5' is not -1 or 0 (no limit), or a whole number of at least 1"),
    ("--client-timeout", "nan", "'nan' is not a number of seconds from 0 to 2147483"),
    ("--client-timeout", "inf", "'inf' is not a number of seconds from 0 to 2147483"),  # more than the kernel holds
    ("--max-batch-bytes", "0", "'0' is not a whole number of at least 1"),
])
def test_a_bad_serve_flag_is_a_usage_error(flag, value, complaint, tmp_path):
    result = manage("serve", flag, value, str(tmp_path / "vol"))
    assert result.returncode == 2
    assert result.stderr.startswith("usage: manage.py serve")
    assert result.stderr.endswith(f"manage.py serve: error: argument {flag}: {complaint}\n")
    assert not (tmp_path / "vol").exists()


@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize("variable, value, complaint", [
    ("HARAQA_LIMIT", "-5", "'-5' is not -1 or 0 (no limit), or a whole number of at least 1"),
    ("HARAQA_FSYNC", "always", "'always' is not one of never, batch"),
    ("HARAQA_CORS", "enabled", "'enabled' is not one of 1/0, true/false, yes/no, on/off"),
    ("HARAQA_CLIENT_TIMEOUT", "-1", "'-1' is not a number of seconds from 0 to 2147483"),
])
def test_a_bad_environment_variable_stops_any_command_with_one_line(command, variable, value, complaint, tmp_path):
    volume = [str(tmp_path / "vol")] if command == "serve" else []
    result = manage(command, *volume, env={variable: value, "HARAQA_DATA_DIR": str(tmp_path)})
    assert (result.returncode, result.stderr) == (2, f"error: {variable}: {complaint}\n")


def setting_values(names: str, env: dict) -> str:
    """``print(settings.<name>, ...)`` in a fresh process with ``env``."""
    code = f"from django.conf import settings as s; print({', '.join('s.' + n for n in names.split())})"
    result = manage("shell", "--no-imports", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_blank_variables_mean_their_defaults():
    """``VAR=`` in an .env file reads as unset, as it did before values were checked."""
    blank = {"DJANGO_DEBUG": "", "HARAQA_CORS": " ", "DJANGO_ALLOWED_HOSTS": ""}
    assert setting_values("DEBUG HARAQA_CORS ALLOWED_HOSTS", blank) == "False True ['*']"
    hosts = {"DJANGO_ALLOWED_HOSTS": "queue.example, localhost,"}
    assert setting_values("ALLOWED_HOSTS", hosts) == "['queue.example', 'localhost']"


def test_serves_own_variables_and_the_data_dir_are_checked_too(tmp_path):
    result = manage("serve", str(tmp_path / "vol"), env={"HARAQA_WORKERS": "0", "HARAQA_DATA_DIR": str(tmp_path)})
    assert (result.returncode, result.stderr) == (2, "error: HARAQA_WORKERS: '0' is not a whole number of at least 1\n")
    (tmp_path / "file").write_text("")
    result = manage("check", env={"HARAQA_DATA_DIR": str(tmp_path / "file" / "data"), "DJANGO_SECRET_KEY": ""})
    assert result.returncode == 2
    assert result.stderr == (
        f"error: HARAQA_DATA_DIR: cannot keep the secret key in {tmp_path / 'file' / 'data'} (Not a directory); "
        "make that directory writable, choose another, or set DJANGO_SECRET_KEY\n"
    )


def test_overridden_settings_are_read_again(settings, tmp_path):
    first, second = [str(tmp_path / "a")], [str(tmp_path / "b")]
    settings.HARAQA_VOLUMES, settings.HARAQA_LIMIT = first, 3
    store = get_store()
    assert (conf.limit, store.volumes) == (3, first)

    settings.HARAQA_VOLUMES, settings.HARAQA_LIMIT = second, 9
    assert (conf.limit, get_store().volumes) == (9, second)
    settings.HARAQA_VOLUMES = first
    assert get_store() is store  # one Store per configuration, kept


def test_serve_flags_replace_settings_read_before_them(settings, tmp_path, monkeypatch):
    """``serve`` sets its flags as settings directly, which sends no ``setting_changed``."""
    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve exports them for the workers
    settings.HARAQA_LIMIT, settings.HARAQA_CLIENT_TIMEOUT = 5, 30
    assert (conf.limit, conf.client_timeout) == (5, 30)
    volume = str(tmp_path / "vol")
    opts = vars(Command().create_parser("manage.py", "serve").parse_args([volume, "--limit", "7", "--client-timeout", "0"]))

    Command._apply_settings([volume], opts)
    assert (conf.limit, conf.client_timeout, conf.volumes) == (7, None, (volume,))
    assert get_store().volumes == [volume]
