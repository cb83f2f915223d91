"""Who may open which admin page: login, staff status and the four queue permissions."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from .conftest import produce, topic_url, tree, volume_url

ALL = ("view_topics", "change_topics", "view_volumes", "can_recover")

# (method, url name, needs a topic, extra args, POST data, the permission it needs)
PAGES = [
    ("get", "topic", "changelist", False, (), None, "view_topics"),
    ("get", "topic", "chart", False, (), None, "view_topics"),
    ("get", "topic", "change", True, (), None, "view_topics"),
    ("get", "topic", "message", True, (0,), None, "view_topics"),
    ("get", "topic", "message_raw", True, (0,), None, "view_topics"),
    ("post", "topic", "produce", True, (), {"body": "x"}, "change_topics"),
    ("get", "topic", "truncate", True, (), {"before_id": "5"}, "change_topics"),
    ("post", "topic", "truncate", True, (), {"before_id": "5"}, "change_topics"),
    ("get", "topic", "delete", True, (), None, "change_topics"),
    ("post", "topic", "delete", True, (), {}, "change_topics"),
    ("get", "topic", "history", True, (), None, "view_topics"),
    ("get", "volume", "changelist", False, (), None, "view_volumes"),
    ("get", "volume", "run_status", False, (), None, "view_volumes"),
    ("get", "volume", "history", False, (), None, "view_volumes"),
    ("post", "volume", "check", False, (), {}, "can_recover"),
    ("post", "volume", "recover", False, (), {}, "can_recover"),
]
IDS = [f"{method}-{model}-{name}" for method, model, name, *_ in PAGES]


@pytest.fixture
def topic(store) -> str:
    produce(store, "team/orders", [b"m%d" % i for i in range(12)])
    return "team/orders"


def url_of(page, topic: str) -> str:
    _, model, name, needs_topic, args, _, _ = page
    if model == "volume":
        return volume_url(name)
    return topic_url(name, topic if needs_topic else "", *args)


def call(client: Client, page, topic: str):
    method, *_, data, _ = page
    response = getattr(client, method)(url_of(page, topic), data or {})
    if response.streaming:  # the raw download streams from a data file: read and close it
        b"".join(response.streaming_content)
        response.close()
    return response


def disk(volumes: list[str]) -> list[dict[str, bytes]]:
    return [tree(volume) for volume in volumes]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_anonymous_users_are_sent_to_the_login_page(client, topic, page):
    response = call(client, page, topic)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_users_without_staff_status_are_sent_to_the_login_page(user_client, store, topic, page):
    before = disk(store.volumes)
    response = call(user_client(*ALL, staff=False), page, topic)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert disk(store.volumes) == before


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_staff_without_the_page_permission_get_403_and_nothing_changes(user_client, store, settings, topic, page):
    before = disk(store.volumes)
    client = user_client(*(p for p in ALL if p != page[-1]))
    assert call(client, page, topic).status_code == 403
    assert disk(store.volumes) == before
    assert not LogEntry.objects.exists()
    assert not (settings.DATA_DIR / "admin-recovery.json").exists()


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_staff_with_the_page_permission_alone_may_use_it(user_client, topic, page):
    response = call(user_client(page[-1]), page, topic)
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert not response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("name", ["check", "recover"])
def test_check_and_recover_refuse_get(admin_client, store, name):
    assert admin_client.get(volume_url(name)).status_code == 405


@pytest.mark.parametrize("name", ["produce"])
def test_produce_refuses_get(admin_client, topic, name):
    assert admin_client.get(topic_url(name, topic)).status_code == 405


def test_state_changing_posts_need_the_csrf_token(admin_user, store, topic, settings):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = disk(store.volumes)
    for url, data in [
        (topic_url("produce", topic), {"body": "x"}),
        (topic_url("truncate", topic), {"before_id": "10"}),
        (topic_url("delete", topic), {}),
        (volume_url("check"), {}),
        (volume_url("recover"), {}),
    ]:
        assert client.post(url, data).status_code == 403, url
    assert disk(store.volumes) == before
    assert not (settings.DATA_DIR / "admin-recovery.json").exists()


def test_the_index_lists_only_what_the_user_may_see(user_client, store):
    page = user_client("view_topics").get("/admin/").content.decode()
    assert "/admin/queues/topic/" in page
    assert "/admin/queues/volume/" not in page
    page = user_client("view_volumes", "can_recover").get("/admin/").content.decode()
    assert "/admin/queues/volume/" in page
    assert "/admin/queues/topic/" not in page


def test_staff_who_may_only_view_see_no_action_forms(user_client, topic):
    page = user_client("view_topics").get(topic_url("change", topic)).content.decode()
    assert topic_url("produce", topic) not in page
    assert topic_url("delete", topic) not in page
    page = user_client("view_volumes").get(volume_url("changelist")).content.decode()
    assert volume_url("recover") not in page
    assert volume_url("check") not in page
