"""History pages: the admin log of one topic, and of the volumes, newest first and paged."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry

from queues.admin_views import HISTORY_PER_PAGE
from queues.models import Topic

from .conftest import topic_url, volume_url, wait_for_runs


def test_a_topic_history_lists_its_own_actions_newest_first(admin_client, admin_user, store):
    store.create_topic("t")
    store.create_topic("other")
    admin_client.post(topic_url("produce", "t"), {"body": "one"})
    admin_client.post(topic_url("produce", "other"), {"body": "x"})
    admin_client.post(topic_url("produce", "t"), {"body": "two"})
    page = admin_client.get(topic_url("history", "t"))
    assert page.status_code == 200
    assert [e.change_message for e in page.context["entries"]] == [
        "Produced message 1 (3 bytes)",
        "Produced message 0 (3 bytes)",
    ]
    html = page.content.decode()
    assert f"<td>{admin_user.username}</td>" in html and "Produced message 1 (3 bytes)" in html
    assert f'<a href="{topic_url("change", "t")}">t</a>' in html  # the crumbs lead back to the topic
    topic_page = admin_client.get(topic_url("change", "t")).content.decode()
    assert f'href="{topic_url("history", "t")}" class="historylink"' in topic_page


def test_a_deleted_topic_keeps_its_history_and_its_404_page_links_there(admin_client, store):
    store.create_topic("t")
    admin_client.post(topic_url("produce", "t"), {"body": "one"})
    admin_client.post(topic_url("delete", "t"))
    page = admin_client.get(topic_url("history", "t"))
    assert page.status_code == 200
    assert [str(e) for e in page.context["entries"]] == ["Deleted “t.”", "Changed “t” — Produced message 0 (3 bytes)"]
    html = page.content.decode()
    assert "Deleted “t.”" in html and "This topic no longer exists" in html
    assert f'<a href="{topic_url("change", "t")}">' not in html
    missing = admin_client.get(topic_url("change", "t"))
    assert missing.status_code == 404
    assert f'href="{topic_url("history", "t")}"' in missing.content.decode()
    never = admin_client.get(topic_url("change", "never"))
    assert topic_url("history", "never") not in never.content.decode()  # nothing logged: no link
    assert admin_client.get("/admin/queues/topic/..%2Fetc/history/").status_code == 404


def test_history_is_paged(admin_client, admin_user, store):
    for i in range(HISTORY_PER_PAGE + 5):
        LogEntry.objects.log_actions(admin_user.pk, [Topic(name="t")], CHANGE, f"entry {i}")
    page = admin_client.get(topic_url("history", "t"))
    assert [e.change_message for e in page.context["entries"]][:2] == [
        f"entry {HISTORY_PER_PAGE + 4}",
        f"entry {HISTORY_PER_PAGE + 3}",
    ]
    assert len(page.context["entries"]) == HISTORY_PER_PAGE
    assert 'href="?p=2"' in page.content.decode()
    page = admin_client.get(topic_url("history", "t"), {"p": 2})
    assert [e.change_message for e in page.context["entries"]] == [f"entry {i}" for i in range(4, -1, -1)]


def test_the_volume_history_lists_check_and_recover_runs(admin_client, store):
    store.create_topic("t")
    admin_client.post(topic_url("produce", "t"), {"body": "one"})
    admin_client.post(volume_url("check"))
    wait_for_runs()
    admin_client.post(volume_url("recover"))
    wait_for_runs()
    page = admin_client.get(volume_url("history"))
    assert page.status_code == 200
    entries = page.context["entries"]
    runs = [e.change_message.rsplit(" (run ", 1)[0] for e in entries]
    assert runs == ["Recovery started"] * 3 + ["Check (dry run) started"] * 3  # no topic's actions
    assert sorted(e.object_id for e in entries[:3]) == sorted(store.volumes)
    html = page.content.decode()
    assert all(f"<code>{volume}</code>" in html for volume in store.volumes)
    volumes_page = admin_client.get(volume_url("changelist")).content.decode()
    assert f'href="{volume_url("history")}" class="historylink"' in volumes_page
