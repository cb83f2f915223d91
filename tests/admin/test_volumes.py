"""The volumes page and the check / recover runs it starts in the background."""

from __future__ import annotations

import fcntl
import json
import os
import shutil

from django.contrib.admin.models import CHANGE, LogEntry
from prometheus_client import REGISTRY

from queues import admin_jobs

from .conftest import produce, topic_url, tree, volume_url, wait_for_runs


def test_volumes_page_shows_path_space_topics_and_health(admin_client, store):
    produce(store, "a", [b"x"])
    produce(store, "b/c", [b"y"])
    page = admin_client.get(volume_url("changelist"))
    assert page.status_code == 200
    assert [(v.path, v.topics, v.health) for v in page.context["volumes"]] == [(p, 2, "ok") for p in store.volumes]
    html = page.content.decode()
    assert all(path in html for path in store.volumes)
    assert "Check (dry run)" in html and "Recover" in html
    shutil.rmtree(store.volumes[1])
    volumes = admin_client.get(volume_url("changelist")).context["volumes"]
    assert [v.health for v in volumes] == ["ok", "missing", "ok"]
    assert volumes[1].missing_topics == 2


def test_check_reports_without_changing_anything_and_is_logged(admin_client, admin_user, store, settings):
    produce(store, "a", [b"x"] * 7)
    shutil.rmtree(os.path.join(store.volumes[0], "a"))
    before = [tree(v) for v in store.volumes]
    response = admin_client.post(volume_url("check"))
    assert response.status_code == 302 and response["Location"] == volume_url("changelist")
    wait_for_runs()
    assert [tree(v) for v in store.volumes] == before
    run = admin_client.get(volume_url("run_status")).json()["run"]
    assert (run["mode"], run["state"], run["user"]) == ("check", "done", admin_user.username)
    assert [(p["what"], p["volume"], p["repaired"]) for p in run["report"]["problems"]] == [
        ("topic missing", store.volumes[0], False)
    ]
    page = admin_client.get(volume_url("changelist"))
    assert page.context["report"]["result"] == "problems found"
    assert "nothing was changed" in page.content.decode()
    entries = LogEntry.objects.order_by("object_id")
    assert [(e.user, e.action_flag, e.object_id) for e in entries] == [
        (admin_user, CHANGE, v) for v in sorted(store.volumes)
    ]
    assert entries[0].change_message == f"Check (dry run) started (run {run['id']})"


def test_recover_restores_a_deleted_volume_and_shows_the_report(admin_client, store):
    produce(store, "a", [b"x"] * 7)
    produce(store, "b/c", [b"y" * 50] * 3)
    expected = tree(store.volumes[2])
    shutil.rmtree(store.volumes[1])
    runs_before = REGISTRY.get_sample_value("haraqa_recovery_runs_total", {"result": "repaired"}) or 0
    admin_client.post(volume_url("recover"))
    wait_for_runs()
    assert tree(store.volumes[1]) == expected
    assert REGISTRY.get_sample_value("haraqa_recovery_runs_total", {"result": "repaired"}) == runs_before + 1
    page = admin_client.get(volume_url("changelist"))
    report = page.context["report"]
    assert report["result"] == "repaired"
    assert ("Unrepairable messages", 0) in report["summary"]
    found = {(p["what"], p["repaired"]) for p in report["problems"]}
    assert found >= {("volume missing", True), ("topic missing", True)}
    assert [v.health for v in page.context["volumes"]] == ["ok", "ok", "ok"]
    assert "What was found and repaired" in page.content.decode()
    assert LogEntry.objects.filter(change_message__startswith="Recovery started").count() == 3


def test_messages_damaged_on_every_volume_are_reported_unrepairable(admin_client, store):
    produce(store, "t", [b"aaaa", b"bbbb", b"cccc"])
    for volume in store.volumes:
        with open(os.path.join(volume, "t", "00000000000000000000.dat"), "r+b") as f:
            f.seek(5)
            f.write(b"X")  # message 1 on every copy
    admin_client.post(volume_url("recover"))
    wait_for_runs()
    page = admin_client.get(volume_url("changelist"))
    assert page.context["report"]["result"] == "unrepairable"
    assert page.context["report"]["lost"] == [{"topic": "t", "first_id": 1, "last_id": 1}]
    assert "Unrepairable" in page.content.decode()
    rows = admin_client.get(topic_url("change", "t")).context["rows"]
    assert [(r["info"].id, r["info"].damaged) for r in rows] == [(0, False), (1, True), (2, False)]
    damaged = admin_client.get(topic_url("message", "t", 1))
    assert damaged.status_code == 404
    assert "This message is damaged on every volume and is not served" in damaged.content.decode()


def test_the_report_says_no_problem_only_when_no_message_is_lost_either(admin_client, store):
    produce(store, "t", [b"aaaa", b"bbbb", b"cccc"])

    def run(name: str) -> tuple[dict, str]:
        admin_client.post(volume_url(name))
        wait_for_runs()
        page = admin_client.get(volume_url("changelist"))
        return page.context["report"], page.content.decode()

    intact = "No problem: every volume holds every message intact."
    report, html = run("check")
    assert (report["problems"], report["lost"]) == ([], [])
    assert intact in html
    shutil.rmtree(os.path.join(store.volumes[0], "t"))
    for volume in store.volumes[1:]:
        with open(os.path.join(volume, "t", "00000000000000000000.dat"), "r+b") as f:
            f.seek(5)
            f.write(b"X")  # message 1 on every copy left
    report, html = run("recover")
    assert report["problems"] and report["lost"]
    assert intact not in html and "No other problem" not in html
    report, html = run("check")  # the copy is back; message 1 is still damaged on every volume
    assert (report["problems"], report["lost"]) == ([], [{"topic": "t", "first_id": 1, "last_id": 1}])
    assert intact not in html
    assert "No other problem: the volumes agree, and every message is intact except those below" in html


def test_only_one_run_at_a_time(admin_client, store, settings):
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.DATA_DIR / admin_jobs.LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a run in another worker holds it
        response = admin_client.post(volume_url("recover"), follow=True)
    assert "already running" in response.content.decode()
    assert not LogEntry.objects.exists()


def test_a_run_whose_worker_died_shows_as_interrupted(admin_client, store, settings):
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    state = {"id": "x", "mode": "recover", "state": "running", "user": "admin", "started_at": 1.0,
             "finished_at": None, "progress": {"done": 10, "total": 100, "item": "a segment 0"},
             "report": None, "error": None}
    (settings.DATA_DIR / admin_jobs.STATE_FILE).write_text(json.dumps(state))
    assert admin_client.get(volume_url("run_status")).json()["run"]["state"] == "interrupted"
    assert "stopped before the end" in admin_client.get(volume_url("changelist")).content.decode()
    with open(settings.DATA_DIR / admin_jobs.LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # still alive somewhere: shown as running, with its progress
        page = admin_client.get(volume_url("changelist")).content.decode()
    assert 'data-state="running"' in page and "a segment 0" in page


def test_a_failing_run_shows_its_error(admin_client, store):
    shutil.rmtree(store.volumes[0])
    open(store.volumes[0], "w").close()  # a file where a volume should be
    admin_client.post(volume_url("check"))
    wait_for_runs()
    run = admin_client.get(volume_url("run_status")).json()["run"]
    assert run["state"] == "failed" and "is not a directory" in run["error"]
    assert "is not a directory" in admin_client.get(volume_url("changelist")).content.decode()
