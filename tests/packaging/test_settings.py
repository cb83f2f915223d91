"""``queues.conf``: HARAQA_* settings are read once, and read again whenever they change."""

from __future__ import annotations

import os

from queues.conf import conf, get_store
from queues.management.commands.serve import Command


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
