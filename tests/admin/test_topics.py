"""The topics page: figures per topic, volume badges, filter, sort, pagination and chart data."""

from __future__ import annotations

import os
import shutil

from queues.admin_views import TOPICS_PER_PAGE

from .conftest import produce, topic_url


def test_every_topic_shows_its_figures_and_a_badge_per_volume(admin_client, store):
    store.create_topic("empty")
    produce(store, "orders", [b"x" * 10] * 12)  # segments of 5: 0, 5, 10
    page = admin_client.get(topic_url("changelist"))
    assert page.status_code == 200
    orders = next(row for row in page.context["rows"] if row.name == "orders")
    assert (orders.stats.first_id, orders.stats.last_id, orders.stats.messages) == (0, 11, 12)
    assert (orders.stats.bytes, orders.stats.segments) == (120, 3)
    assert orders.last_write is not None
    assert [b.health for b in orders.badges] == ["ok", "ok", "ok"]
    empty = next(row for row in page.context["rows"] if row.name == "empty")
    assert (empty.stats.messages, empty.stats.last_id, empty.stats.bytes) == (0, None, 0)
    html = page.content.decode()
    assert f'href="{topic_url("change", "orders")}"' in html
    assert "queues-badge-ok" in html


def test_a_topic_missing_or_stale_on_a_volume_gets_a_badge_saying_so(admin_client, store):
    produce(store, "orders", [b"a", b"b"])
    shutil.rmtree(os.path.join(store.volumes[0], "orders"))
    with open(os.path.join(store.volumes[1], "orders", ".commit"), "r+b") as f:
        f.write(b"\xff")  # a torn commit record
    row = admin_client.get(topic_url("changelist")).context["rows"][0]
    assert [b.health for b in row.badges] == ["missing", "corrupt", "ok"]


def test_prefix_and_regex_filters(admin_client, store):
    for name in ("app/a", "app/b", "web/app", "Other"):
        store.create_topic(name)
    names = lambda **q: [r.name for r in admin_client.get(topic_url("changelist"), q).context["rows"]]  # noqa: E731
    assert names(q="app") == ["app/a", "app/b"]
    assert names(q="APP/") == ["app/a", "app/b"]  # names are lower-cased, so is the prefix
    assert names(q="app$", mode="regex") == ["web/app"]
    assert names(q="APP$", mode="regex") == ["web/app"]  # names are lower-case: the regex ignores case
    assert names(q="^[A-Z]+$", mode="regex") == ["other"]
    assert names(q="a.p", mode="prefix") == []  # a prefix is literal
    page = admin_client.get(topic_url("changelist"), {"q": "(", "mode": "regex"})
    assert page.status_code == 200
    assert "Invalid regular expression: missing ): (" in page.content.decode()


def test_sorting_by_each_figure(admin_client, store):
    produce(store, "small", [b"x"] * 3)
    produce(store, "big", [b"y" * 100])
    produce(store, "many", [b"z"] * 11)
    names = lambda o: [r.name for r in admin_client.get(topic_url("changelist"), {"o": o}).context["rows"]]  # noqa: E731
    assert names("name") == ["big", "many", "small"]
    assert names("-name") == ["small", "many", "big"]
    assert names("-bytes") == ["big", "many", "small"]
    assert names("-messages") == ["many", "small", "big"]
    assert names("messages") == ["big", "small", "many"]
    assert names("-segments")[0] == "many"
    assert names("-last_write")[0] == "many"
    assert names("nonsense") == ["big", "many", "small"]
    store.truncate("many", before_id=5)  # first ids: big 0, many 5, small 0; last ids 0, 10, 2
    store.create_topic("empty")  # no last id
    assert names("-first_id") == ["many", "big", "empty", "small"]
    assert names("first_id") == ["big", "empty", "small", "many"]
    assert names("-last_id") == ["many", "small", "big", "empty"]
    assert names("last_id") == ["empty", "big", "small", "many"]


def test_every_column_but_volumes_sorts_and_the_filter_keeps_the_sort(admin_client, store):
    store.create_topic("t")
    page = admin_client.get(topic_url("changelist"), {"q": "t", "o": "-first_id", "p": "1"})
    assert [c["order"] for c in page.context["columns"]] == [
        "name", "first_id", "-last_id", "-messages", "-bytes", "-segments", "-last_write"
    ]  # a second click on First id sorts it the other way
    html = page.content.decode()
    assert html.count('class="sortable') == 7
    assert 'href="?q=t&amp;o=-last_id"' in html
    assert '<input type="hidden" name="o" value="-first_id">' in html


def test_pagination_keeps_the_filter_and_sort(admin_client, store):
    for i in range(TOPICS_PER_PAGE + 7):
        store.create_topic(f"t{i:03d}")
    store.create_topic("zzz")
    page = admin_client.get(topic_url("changelist"), {"q": "t", "o": "-name", "p": 2})
    assert [r.name for r in page.context["rows"]] == [f"t{i:03d}" for i in range(6, -1, -1)]
    assert page.context["total"] == TOPICS_PER_PAGE + 7
    html = page.content.decode()
    assert "?q=t&amp;o=-name&amp;p=1" in html
    # Out of range pages show the last one rather than failing.
    assert admin_client.get(topic_url("changelist"), {"p": 99}).status_code == 200


def test_only_the_page_shown_is_read_in_detail(admin_client, store, monkeypatch):
    for i in range(TOPICS_PER_PAGE * 3):
        store.create_topic(f"t{i:03d}")
    import queues.admin_views as views

    seen: list[str] = []
    real = views.topic_health
    monkeypatch.setattr(views, "topic_health", lambda volumes, name: seen.append(name) or real(volumes, name))
    admin_client.get(topic_url("changelist"), {"p": 2})
    assert seen == [f"t{i:03d}" for i in range(TOPICS_PER_PAGE, 2 * TOPICS_PER_PAGE)]


def test_chart_data_lists_the_largest_topics(admin_client, store):
    produce(store, "small", [b"x"] * 3)
    produce(store, "big", [b"y" * 100])
    store.create_topic("empty")
    data = admin_client.get(topic_url("chart")).json()
    assert data["bytes"] == [{"name": "big", "value": 100}, {"name": "small", "value": 3}]
    assert data["messages"] == [{"name": "small", "value": 3}, {"name": "big", "value": 1}]
    assert admin_client.get(topic_url("chart"), {"q": "sm"}).json()["bytes"] == [{"name": "small", "value": 3}]


def test_chart_script_and_styles_come_from_our_own_static_files(admin_client, store):
    html = admin_client.get(topic_url("changelist")).content.decode()
    assert 'src="/static/queues/chart.js"' in html
    assert 'href="/static/queues/admin.css"' in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_topic_names_with_slashes_and_underscores_round_trip_in_urls(admin_client, store):
    produce(store, "a_b/delete", [b"1"])
    url = topic_url("change", "a_b/delete")
    assert url == "/admin/queues/topic/a_5Fb_2Fdelete/"
    assert admin_client.get(url).context["topic_name"] == "a_b/delete"
