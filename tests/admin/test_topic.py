"""One topic: segment table, message browser, message page, raw download, produce, truncate, delete."""

from __future__ import annotations

import io
import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib import messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry

from queues.admin_views import MESSAGES_PER_PAGE, SEGMENTS_PER_PAGE, preview
from queues.storage import TopicNotFound

from ..faults import flip_byte
from .conftest import produce, topic_url

XSS = b"<script>alert(1)</script>"


def test_segment_table_shows_sizes_and_checksums_on_every_volume(admin_client, store):
    produce(store, "orders", [b"%02d" % i for i in range(7)])  # segments 0 (5 messages) and 5 (2)
    page = admin_client.get(topic_url("change", "orders"))
    volumes = page.context["volumes"]
    assert [v.volume for v in volumes] == store.volumes
    for volume in volumes:
        assert volume.health == "ok"
        assert [(s.first_id, s.messages, s.data_bytes, s.index_bytes, s.status) for s in volume.segments] == [
            (0, 5, 10, 160, "ok"),
            (5, 2, 4, 64, "ok"),
        ]


def test_a_flipped_byte_shows_as_a_checksum_failure_with_the_message_id(admin_client, store):
    produce(store, "orders", [b"%02d" % i for i in range(7)])
    flip_byte(os.path.join(store.volumes[0], "orders", "00000000000000000005.dat"), 2)  # message 6
    flip_byte(os.path.join(store.volumes[1], "orders", "00000000000000000000.idx"), 32 * 3 + 9)  # record 3
    volumes = admin_client.get(topic_url("change", "orders")).context["volumes"]
    assert [(s.status, s.bad_ids) for s in volumes[0].segments] == [("ok", []), ("data corrupt", [6])]
    assert [(s.status, s.bad_ids) for s in volumes[1].segments] == [("index records corrupt", [3]), ("ok", [])]
    os.unlink(os.path.join(store.volumes[1], "orders", "00000000000000000005.dat"))
    page = admin_client.get(topic_url("change", "orders"))
    assert page.context["volumes"][1].segments[1].status == "data file missing"
    assert "queues-badge-bad" in page.content.decode()


def test_large_topics_verify_checksums_only_when_asked(admin_client, store, monkeypatch):
    monkeypatch.setattr("queues.admin_views.AUTO_VERIFY_BYTES", 5)
    produce(store, "orders", [b"%02d" % i for i in range(7)])
    page = admin_client.get(topic_url("change", "orders"))
    assert {s.status for v in page.context["volumes"] for s in v.segments} == {"not verified"}
    assert 'href="?verify=1#segments"' in page.content.decode()
    page = admin_client.get(topic_url("change", "orders"), {"verify": "1"})
    assert {s.status for v in page.context["volumes"] for s in v.segments} == {"ok"}


def test_segment_table_is_paged_newest_first(admin_client, store):
    produce(store, "long", [b"x"] * (5 * SEGMENTS_PER_PAGE + 12))  # 23 segments of 5
    url = topic_url("change", "long")
    page = admin_client.get(url)
    assert [s.first_id for s in page.context["volumes"][0].segments] == [100, 105, 110]
    assert "?sp=1" in page.content.decode()
    page = admin_client.get(url, {"sp": 1, "verify": 1})
    assert [s.first_id for s in page.context["volumes"][2].segments] == list(range(0, 100, 5))
    assert {s.status for v in page.context["volumes"] for s in v.segments} == {"ok"}


def test_message_previews_are_escaped_text_pretty_json_or_hex(admin_client, store):
    produce(store, "mixed", [XSS, b'{"a": [1, "<b>"]}', bytes(range(20)), b""])
    page = admin_client.get(topic_url("change", "mixed"))
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    kinds = [(row["info"].id, row["info"].size, row["preview"].kind) for row in page.context["rows"]]
    assert kinds == [(0, len(XSS), "text"), (1, 17, "json"), (2, 20, "hex"), (3, 0, "text")]
    assert page.context["rows"][1]["preview"].text == '{\n  "a": [\n    1,\n    "<b>"\n  ]\n}'
    assert "&lt;b&gt;" in html
    assert "00000000  00 01 02 03" in page.context["rows"][2]["preview"].text
    assert all(abs(row["time"] - datetime.now(timezone.utc)) < timedelta(minutes=5) for row in page.context["rows"])


def test_preview_of_a_cut_message_keeps_text_that_ends_mid_character():
    assert preview("héllo".encode()[:2], complete=False).kind == "text"
    assert preview(b'{"a": 1', complete=False).kind == "text"
    assert preview(b"\xff\xfe", complete=True).kind == "hex"
    assert preview(b"a\x00b", complete=True).kind == "hex"


def test_message_browser_pages_by_id_across_segments(admin_client, store):
    produce(store, "long", [b"m%03d" % i for i in range(47)])
    url = topic_url("change", "long")
    page = admin_client.get(url)
    assert [r["info"].id for r in page.context["rows"]] == list(range(MESSAGES_PER_PAGE))
    assert page.context["paging"] == {"first": None, "previous": None, "next": 20, "newest": 27}
    page = admin_client.get(url, {"from": 20})
    assert [r["info"].id for r in page.context["rows"]] == list(range(20, 40))
    assert page.context["paging"] == {"first": 0, "previous": 0, "next": 40, "newest": 27}
    page = admin_client.get(url, {"from": 40})
    assert [r["info"].id for r in page.context["rows"]] == list(range(40, 47))
    assert page.context["paging"]["next"] is None
    store.truncate("long", before_id=12)  # segments 0 and 5 go
    page = admin_client.get(url, {"from": 3})
    assert page.context["rows"][0]["info"].id == 10
    assert admin_client.get(url, {"from": "junk"}).status_code == 200


def test_message_paging_keeps_the_segment_page_and_verify(admin_client, store, monkeypatch):
    monkeypatch.setattr("queues.admin_views.AUTO_VERIFY_BYTES", 5)
    produce(store, "long", [b"m%03d" % i for i in range(47)])
    html = admin_client.get(topic_url("change", "long"), {"from": 20, "sp": 1, "verify": 1}).content.decode()
    for start in (0, 40, 27):  # first and previous, next, newest
        assert f'href="?from={start}&amp;sp=1&amp;verify=1#messages"' in html
    assert '<input type="hidden" name="sp" value="1">' in html  # the From id box keeps them too
    assert '<input type="hidden" name="verify" value="1">' in html
    html = admin_client.get(topic_url("change", "long"), {"from": 20, "sp": 1}).content.decode()
    assert 'href="?from=20&amp;sp=1&amp;verify=1#segments"' in html  # Verify keeps the messages shown


def test_message_page_shows_the_whole_message_escaped(admin_client, store):
    produce(store, "web", [b"first", XSS])
    page = admin_client.get(topic_url("message", "web", 1))
    html = page.content.decode()
    assert page.context["message"].id == 1 and page.context["message"].checksum_ok is True
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert admin_client.get(topic_url("message", "web", 2)).status_code == 404
    assert admin_client.get(topic_url("message", "nope", 0)).status_code == 404


def test_raw_download_returns_the_exact_bytes(admin_client, store):
    payload = os.urandom(3000)
    produce(store, "bin", [b"a", payload])
    response = admin_client.get(topic_url("message_raw", "bin", 1))
    body = b"".join(response.streaming_content)
    response.close()
    assert body == payload
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == "3000"
    assert response["Content-Disposition"] == 'attachment; filename="bin-1.bin"'
    assert admin_client.get(topic_url("message_raw", "bin", 5)).status_code == 404


def test_missing_and_invalid_topics_are_404(admin_client, store):
    assert admin_client.get(topic_url("change", "nope")).status_code == 404
    assert admin_client.get("/admin/queues/topic/..%2Fetc/").status_code == 404
    assert admin_client.get(topic_url("delete", "nope")).status_code == 404


def test_a_404_in_the_admin_is_an_admin_page_with_the_reason_and_a_way_back(admin_client, store):
    produce(store, "web", [b"first"])
    cases = [
        (admin_client.get(topic_url("change", "nope")), "No such topic", topic_url("changelist")),
        (admin_client.post(topic_url("delete", "nope")), "No such topic", topic_url("changelist")),
        (admin_client.get(topic_url("message", "web", 5)), "No such message", topic_url("change", "web")),
        (admin_client.get(topic_url("message_raw", "web", 5)), "No such message", topic_url("change", "web")),
    ]
    for response, reason, back in cases:
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")
        html = response.content.decode()
        assert reason in html and f'href="{back}"' in html
        assert 'href="/static/queues/admin.css"' in html  # the admin's frame, not the API's text


def test_an_address_no_admin_page_has_is_an_admin_404_page(admin_client, client, store):
    for path in ("/admin/queues/topic/web/typo/", "/admin/no-such-app/"):
        response = admin_client.get(path)
        assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
        html = response.content.decode()
        assert "No admin page has this address." in html and 'href="/admin/"' in html
    assert client.get("/admin/no-such-app/").status_code == 302  # signed out: the sign-in page first
    response = client.get("/no-such-app/")  # outside the admin, haraqa's answer
    assert (response.status_code, response["X-Errors"], response.content) == (404, "not found", b"not found")


def test_produce_appends_a_message_and_logs_it(admin_client, admin_user, store):
    store.create_topic("t")
    response = admin_client.post(topic_url("produce", "t"), {"body": "héllo <b>"})
    assert response.status_code == 302 and response["Location"].endswith("?from=0")
    assert store.consume("t", 0, 1).messages() == ["héllo <b>".encode()]
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id, entry.object_repr) == (admin_user, CHANGE, "t", "t")
    assert entry.change_message == "Produced message 0 (10 bytes)"
    assert entry.get_admin_url() == topic_url("change", "t")


def test_produce_stores_line_breaks_as_lf_though_browsers_send_crlf(admin_client, store):
    store.create_topic("t")
    admin_client.post(topic_url("produce", "t"), {"body": "one\r\ntwo\rthree\n"})
    assert store.consume("t", 0, 1).messages() == [b"one\ntwo\nthree\n"]
    assert LogEntry.objects.get().change_message == "Produced message 0 (14 bytes)"
    assert "Line breaks are stored as LF" in admin_client.get(topic_url("change", "t")).content.decode()


def test_truncate_asks_for_confirmation_then_removes_whole_segments(admin_client, store):
    produce(store, "t", [b"x"] * 12)  # segments 0, 5, 10
    before = {v: sorted(os.listdir(os.path.join(v, "t"))) for v in store.volumes}
    page = admin_client.get(topic_url("truncate", "t"), {"before_id": "7"})
    assert page.status_code == 200 and b"Yes, truncate" in page.content
    assert {v: sorted(os.listdir(os.path.join(v, "t"))) for v in store.volumes} == before
    assert not LogEntry.objects.exists()
    response = admin_client.post(topic_url("truncate", "t"), {"before_id": "7"})
    assert response.status_code == 302
    assert store.offsets("t").min_offset == 5
    entry = LogEntry.objects.get()
    assert entry.change_message == "Truncated (before_id=7): first stored id 0 -> 5"


def test_a_truncate_that_removes_nothing_says_so_and_why(admin_client, store):
    produce(store, "t", [b"x"] * 7)  # segments 0 and 5, the active one
    response = admin_client.post(topic_url("truncate", "t"), {"before_id": "3"}, follow=True)
    assert store.offsets("t").min_offset == 0
    [message] = response.context["messages"]
    assert message.level == messages.WARNING
    assert str(message) == (
        "Nothing was removed from t: only whole segments whose messages all precede the bound go, and never "
        "the active segment. The first stored id stays 0."
    )
    entry = LogEntry.objects.get()
    assert entry.change_message == "Truncated (before_id=3): nothing removed, first stored id stays 0"


def test_truncate_by_time(admin_client, store):
    produce(store, "t", [b"x"] * 12)
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    page = admin_client.get(topic_url("truncate", "t"), {"before": later.strftime("%Y-%m-%dT%H:%M:%S")})
    assert page.status_code == 200
    admin_client.post(topic_url("truncate", "t"), {"before": later.isoformat()})
    assert store.offsets("t").min_offset == 10  # the active segment stays


def test_truncate_without_a_bound_goes_back_with_an_error(admin_client, store):
    store.create_topic("t")
    response = admin_client.get(topic_url("truncate", "t"), {"before_id": ""}, follow=True)
    assert "Give an id, a time, or both." in response.content.decode()
    assert admin_client.post(topic_url("truncate", "t"), {}).status_code == 400


@pytest.mark.parametrize(
    ("query", "error"),
    [({"before_id": bad, "before": ""}, "Before id: Enter a whole number, 1 or more.") for bad in ("abc", "0", "-5")]
    + [({"before_id": "", "before": "soon"}, "Before time (UTC): Enter a valid date/time.")],
)
def test_a_bad_truncate_bound_goes_back_with_the_fields_own_error(admin_client, store, query, error):
    store.create_topic("t")
    response = admin_client.get(topic_url("truncate", "t"), query, follow=True)
    assert response.redirect_chain == [(topic_url("change", "t"), 302)]
    assert [str(m) for m in response.context["messages"]] == [error]


def test_delete_asks_for_confirmation_then_deletes_and_logs(admin_client, admin_user, store):
    produce(store, "t/nested", [b"x"])
    store.create_topic("t")
    page = admin_client.get(topic_url("delete", "t"))
    assert page.status_code == 200 and b"Yes, delete" in page.content
    assert b"every message it stores (none now)" in page.content  # not "ids 0 to -1"
    assert b"(ids 0 to 0)" in admin_client.get(topic_url("delete", "t/nested")).content
    assert "t" in store.list_topics()
    response = admin_client.post(topic_url("delete", "t"))
    assert response.status_code == 302 and response["Location"] == topic_url("changelist")
    assert store.list_topics() == ["t/nested"]
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id) == (DELETION, "t")
    assert admin_client.post(topic_url("delete", "t")).status_code == 404
    with pytest.raises(TopicNotFound):
        store.offsets("t")


def test_an_action_the_engine_refuses_goes_back_to_the_topic_with_the_reason(admin_client, store, settings):
    store.create_topic("t")
    settings.HARAQA_MAX_BATCH_BYTES = 4
    response = admin_client.post(topic_url("produce", "t"), {"body": "too long"}, follow=True)
    assert response.redirect_chain == [(topic_url("change", "t"), 302)]
    assert "The storage engine refused: batch larger than 4 bytes" in response.content.decode()
    assert not LogEntry.objects.exists()


def test_a_topic_unreadable_on_the_last_volume_is_shown_from_the_one_serving_it(admin_client, store):
    """As consumes do, the page reads the last volume holding the topic intact, and the badges
    say what is wrong with the others."""
    produce(store, "t", [b"x"])
    with open(os.path.join(store.volumes[-1], "t", ".commit"), "r+b") as f:
        f.write(b"\xff" * 8)
    page = admin_client.get(topic_url("change", "t"))
    assert page.status_code == 200
    assert (page.context["served_from"], page.context["stats"].next_id) == (store.volumes[-2], 1)
    assert [v.health for v in page.context["volumes"]][-1] == "corrupt"
    listed = admin_client.get(topic_url("changelist"))
    assert [row.stats.next_id for row in listed.context["rows"] if row.name == "t"] == [1]


def test_the_topic_page_keeps_working_while_producers_and_truncates_change_the_topic(admin_client, store):
    """The page reads without the topic lock: segments vanish under it (it used to answer 500
    when a truncate removed a data file between listing and verifying, and 503 when one moved the
    first id while it read messages)."""
    produce(store, "busy", [b"m" * 10] * 40)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            store.produce("busy", [10] * 7, io.BytesIO(b"n" * 70))
            store.truncate("busy", before_id=store.offsets("busy").max_offset - 12)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        statuses = {admin_client.get(topic_url("change", "busy"), {"verify": "1"}).status_code for _ in range(150)}
    finally:
        stop.set()
        writer.join()
    assert statuses == {200}
