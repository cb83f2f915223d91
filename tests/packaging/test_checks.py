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


def test_no_volume_is_e003(settings):
    assert ids(settings, []) == ["haraqa.E003"]


def test_one_directory_named_twice_is_e004(settings, tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "vol")
    assert ids(settings, [str(tmp_path / "vol"), str(tmp_path / "vol") + "/"]) == ["haraqa.E004"]
    assert ids(settings, [str(tmp_path / "vol"), str(tmp_path / "alias")]) == ["haraqa.E004"]
    assert ids(settings, [str(tmp_path / "new"), str(tmp_path / "." / "new")]) == ["haraqa.E004"]
    assert ids(settings, [str(tmp_path / "vol"), str(tmp_path / "volume2")]) == []  # a shared prefix is fine


def test_a_volume_inside_another_is_e005(settings, tmp_path):
    (tmp_path / "outer").mkdir()
    assert ids(settings, [str(tmp_path / "outer"), str(tmp_path / "outer" / "inner")]) == ["haraqa.E005"]
    assert ids(settings, [str(tmp_path / "outer" / "inner"), str(tmp_path / "outer")]) == ["haraqa.E005"]


def test_manage_py_check_reports_them(settings, tmp_path):
    (tmp_path / "file").write_text("")
    settings.HARAQA_VOLUMES = [str(tmp_path / "file")]
    with pytest.raises(SystemCheckError, match=r"haraqa\.E002"):
        call_command("check")
