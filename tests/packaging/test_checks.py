"""System checks on the configured volumes (``manage.py check``; ``serve`` runs them too)."""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from queues.checks import check_volumes


def ids(settings, volumes: list[str]) -> list[str]:
    settings.HARAQA_VOLUMES = volumes
    return [problem.id for problem in check_volumes()]


def test_writable_and_creatable_volumes_pass(settings, tmp_path):
    (tmp_path / "exists").mkdir()
    assert ids(settings, [str(tmp_path / "exists"), str(tmp_path / "new" / "nested")]) == []


def test_a_file_in_place_of_a_volume_or_its_parent_is_e002(settings, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    assert ids(settings, [str(tmp_path / "file")]) == ["haraqa.E002"]
    assert ids(settings, [str(tmp_path / "file" / "vol")]) == ["haraqa.E002"]


def unwritable_dir(tmp_path) -> str:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if not os.access(locked, os.W_OK):
        return str(locked)
    if not os.access("/proc/sys", os.W_OK):  # root ignores modes; /proc/sys is read-only even for root
        return "/proc/sys"
    pytest.skip("no directory here is unwritable for this user")


def test_an_unwritable_volume_or_parent_is_e001(settings, tmp_path):
    locked = unwritable_dir(tmp_path)
    assert ids(settings, [locked]) == ["haraqa.E001"]
    assert ids(settings, [os.path.join(locked, "haraqa-vol")]) == ["haraqa.E001"]


def test_no_volume_is_e003_and_a_repeated_one_w001(settings, tmp_path):
    assert ids(settings, []) == ["haraqa.E003"]
    assert ids(settings, [str(tmp_path), str(tmp_path) + "/"]) == ["haraqa.W001"]


def test_manage_py_check_reports_them(settings, tmp_path):
    (tmp_path / "file").write_text("")
    settings.HARAQA_VOLUMES = [str(tmp_path / "file")]
    with pytest.raises(SystemCheckError, match=r"haraqa\.E002"):
        call_command("check")
