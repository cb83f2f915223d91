"""haraqa's HTTP API through Django's test client, on real volumes in tmp dirs."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import time

import pytest
from django.core.exceptions import DisallowedHost
from django.http import Http404
from django.test import Client, RequestFactory
from rest_framework.permissions import IsAuthenticated

from queues.api.views import TopicApi

from ..wire_cases import BAD_INPUT, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_volumes) -> Client:
    return Client()


def produce(client: Client, topic: str, messages: list[bytes], **headers):
    return client.post(
        f"/topics/{topic}", b"".join(messages), content_type="application/octet-stream",
        headers={"X-Sizes": ":".join(str(len(m)) for m in messages), **headers},
    )


def consume(client: Client, topic: str, msg_id="0", limit="10", **headers):
    return read(client.get(f"/topics/{topic}", headers={"X-Id": msg_id, "X-Limit": limit, **headers}))


def read(response):
    """Drain a response once, closing the file behind a streamed one; keep its bytes."""
    if not hasattr(response, "body_bytes"):
        if response.streaming:
            response.body_bytes = b"".join(response.streaming_content)
            response.close()
        else:
            response.body_bytes = response.content
    return response


def body(response) -> bytes:
    return read(response).body_bytes


def test_measured_round_trip(client):
    assert client.put("/topics/t").status_code == 201
    assert produce(client, "t", [b"hello", b"world", b"abc"]).status_code == 204
    response = consume(client, "t")
    assert response.status_code == 200
    assert response["X-Sizes"] == "5:5:3"
    assert response["Content-Type"] == "application/octet-stream"
    assert body(response) == b"helloworldabc"


def test_create_answers_have_no_body_for_the_go_client_never_closes_them(client):
    for status, errors in ((201, None), (412, "topic already exists")):  # "ensure the topic exists" creates again
        response = client.put("/topics/t")
        assert (response.status_code, response.get("X-Errors"), response.content) == (status, errors, b"")
        assert response["Content-Length"] == "0" and response["Content-Type"] == "text/plain"


def test_answers_keep_drfs_allow_and_vary_headers(client):
    """The API views skip DRF's per-request negotiation but not the headers DRF gives answers."""
    every_method = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert client.put("/topics/t")["Allow"] == every_method
    assert client.get("/topics")["Allow"] == "GET, HEAD, OPTIONS"
    for response in (produce(client, "t", [b"a"]), consume(client, "t"), client.get("/topics")):
        assert response["Vary"] == "Accept"
    wrong = client.generic("TRACE", "/topics/t")
    assert (wrong.status_code, wrong["Allow"], wrong["X-Errors"]) == (405, every_method, 'Method "TRACE" not allowed.')


def test_a_view_given_permissions_still_checks_them(client):
    """The checks DRF runs before a handler are skipped only while none are configured."""
    client.put("/topics/t")
    guarded = type("GuardedTopicApi", (TopicApi,), {"permission_classes": [IsAuthenticated]})
    request = RequestFactory().post("/topics/t", b"a", content_type="application/octet-stream", headers={"X-Sizes": "1"})
    response = guarded.as_view()(request, topic="t")
    assert (response.status_code, response["X-Errors"]) == (403, "You do not have permission to perform this action.")
    assert body(consume(client, "t")) == b""


def test_consume_reads_exactly_the_range(client):
    client.put("/topics/t")
    produce(client, "t", [b"aaa", b"bb", b"c"])
    produce(client, "t", [b"dddd"])
    response = consume(client, "t", "1", "2")
    assert response["Content-Length"] == "3"
    assert body(response) == b"bbc"


def test_consume_streams_a_real_file_positioned_at_the_range(client):
    """gunicorn's sendfile path needs a file object with a real descriptor at the range start."""
    client.put("/topics/t")
    produce(client, "t", [b"aaa", b"bb", b"c"])
    request = RequestFactory().get("/topics/t", headers={"X-Id": "1", "X-Limit": "1"})
    response = TopicApi.as_view()(request, topic="t")
    wrapped = response.file_to_stream
    assert os.lseek(wrapped.fileno(), 0, os.SEEK_CUR) == 3
    assert os.fstat(wrapped.fileno()).st_size == 6
    assert response["Content-Length"] == "2"
    response.close()


def test_the_range_file_survives_pythons_send_fallback_and_is_never_measured(client):
    """socket.sendfile falls back to seek + read + send when sendfile fails at once (a connection
    the kernel has just ended, say); Django must not size the file by reading it through."""
    client.put("/topics/t")
    produce(client, "t", [b"aaa", b"bb", b"c"])
    request = RequestFactory().get("/topics/t", headers={"X-Id": "1", "X-Limit": "2"})
    response = TopicApi.as_view()(request, topic="t")
    wrapped = response.file_to_stream
    assert os.lseek(wrapped.fileno(), 0, os.SEEK_CUR) == 3  # FileResponse read nothing of it
    sender, receiver = socket.socketpair()
    with sender, receiver:
        assert sender._sendfile_use_send(wrapped, 3, 3) == 3
        assert receiver.recv(10) == b"bbc"
    response.close()


def _corked(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
def test_a_consume_answer_corks_its_socket_from_sendfile_to_close(client):
    """gunicorn asks for the descriptor, sends the headers, then the range; the socket stays
    corked from the first to the file's close, so headers and range leave together."""
    client.put("/topics/t")
    produce(client, "t", [b"aaa", b"bb", b"c"])
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_connection(listener.getsockname()) as peer:
        served, _ = listener.accept()
        with served:
            request = RequestFactory().get("/topics/t", headers={"X-Id": "1", "X-Limit": "2"})
            request.META["gunicorn.socket"] = served
            response = TopicApi.as_view()(request, topic="t")
            wrapped = response.file_to_stream
            assert not _corked(served)  # only a server's sendfile path asks for the descriptor
            offset = os.lseek(wrapped.fileno(), 0, os.SEEK_CUR)  # gunicorn's order: fileno, headers, sendfile
            assert _corked(served)
            served.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            served.sendfile(wrapped, offset=offset, count=3)
            assert _corked(served)
            response.close()
            assert not _corked(served) and wrapped.closed
            peer.settimeout(5)
            received = b""
            while len(received) < 22:
                received += peer.recv(100)
            assert received == b"HTTP/1.1 200 OK\r\n\r\nbbc"


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
def test_a_consume_answer_to_a_connection_that_is_gone_still_closes_its_file(client):
    client.put("/topics/t")
    produce(client, "t", [b"aaa"])
    served = socket.socket()
    served.close()  # setsockopt fails with EBADF
    request = RequestFactory().get("/topics/t", headers={"X-Id": "0", "X-Limit": "1"})
    request.META["gunicorn.socket"] = served
    response = TopicApi.as_view()(request, topic="t")
    wrapped = response.file_to_stream
    assert os.read(wrapped.fileno(), 3) == b"aaa"
    response.close()
    assert wrapped.closed


@pytest.mark.parametrize("kernel_bounds_it", [True, False])
def test_a_consume_answer_waits_at_most_the_client_timeout(monkeypatch, kernel_bounds_it):
    from queues.api import deadlines

    monkeypatch.setattr(deadlines, "KERNEL_DROPS_STALLED_READERS", kernel_bounds_it)
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_connection(listener.getsockname()):
        served, _ = listener.accept()
        with served:
            request = RequestFactory().get("/topics/t")
            request.META["gunicorn.socket"] = served
            deadlines.limit_connection_waits(served, 1.5)  # what serve does with a new connection
            deadlines.limit_response_waits(request, 1.5)
            user_timeout = served.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            # the kernel drops the connection, or Python times out each send (and polls before it)
            assert (user_timeout, served.gettimeout()) == ((1500, None) if kernel_bounds_it else (0, 1.5))


@pytest.mark.parametrize(("timeout", "timeval"), [(30, (30, 0)), (1.5, (1, 500000)), (1e-9, "a tick"), (None, (0, 0))])
def test_each_read_of_a_request_waits_at_most_the_client_timeout(timeout, timeval):
    from queues.api import deadlines

    with socket.socket() as sock:
        deadlines.limit_connection_waits(sock, timeout)
        kept = deadlines.TIMEVAL.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, deadlines.TIMEVAL.size))
        if timeval == "a tick":  # the kernel rounds up to its clock tick; (0, 0) would be "no limit"
            assert kept[0] == 0 and 0 < kept[1] <= 10_000
        else:
            assert kept == timeval


@pytest.mark.parametrize(("release", "bounded"), [
    ("6.1.0-18-amd64", True), ("5.11.0", True), ("5.10.209-1", False), ("4.19.0", False), ("unknown", False),
])
def test_zero_window_waits_are_left_to_kernels_that_bound_them(monkeypatch, release, bounded):
    from queues.api import deadlines

    monkeypatch.setattr(deadlines.platform, "release", lambda: release)
    monkeypatch.setattr(deadlines.platform, "system", lambda: "Linux")
    assert deadlines._kernel_drops_stalled_readers() is bounded


def test_id_query_parameter_and_last_message(client):
    client.put("/topics/t")
    produce(client, "t", [b"a", b"b", b"c"])
    assert body(client.get("/topics/t?id=1", headers={"X-Limit": "1"})) == b"b"
    assert body(consume(client, "t", "-1")) == b"c"
    assert body(client.get("/topics/t?id=0&limit=2", headers={"X-Id": "", "X-Limit": " "})) == b"ab"  # empty: the query's
    assert body(client.get("/topics/t?id=0&limit=2", headers={"X-Id": "2", "X-Limit": "1"})) == b"c"  # else the header wins


def test_text_accept_gets_text_plain(client):
    client.put("/topics/t")
    produce(client, "t", [b"a"])
    assert consume(client, "t", Accept="text/html,*/*")["Content-Type"].startswith("text/plain")


def test_limit_defaults_and_segment_end(client, settings):
    client.put("/topics/t")
    produce(client, "t", [b"x"] * 12)
    assert consume(client, "t", "0", "0")["X-Sizes"] == "1:1:1:1:1"  # segments hold 5
    settings.HARAQA_LIMIT = 2
    assert consume(client, "t", "6", "-3")["X-Sizes"] == "1:1"


@pytest.mark.parametrize("accept, content_type, text", [
    ("application/json", "application/json", '{"topics": ["a", "b/c"]}'),
    ("Application/JSON", "application/json", '{"topics": ["a", "b/c"]}'),  # media types ignore case
    ("TEXT/HTML", "text/html", '<!doctype html><title>topics</title><ul><li><a href="/topics/a">a</a></li>'
     '<li><a href="/topics/b/c">b/c</a></li></ul>'),
    ("text/csv", "text/csv", "a,b/c"),
    ("*/*", "text/csv", "a,b/c"),
    ("application/x-nonsense", "text/csv", "a,b/c"),
])
def test_list_topics_by_accept(client, accept, content_type, text):
    client.put("/topics/a")
    client.put("/topics/B/c")
    for path in ("/topics", "/topics/"):
        response = client.get(path, HTTP_ACCEPT=accept)
        assert response.status_code == 200
        assert response["Content-Type"].startswith(content_type)
        assert response.content.decode() == text


def test_list_topics_html_escapes_names(client):
    client.put("/topics/%3Cb%3E")
    response = client.get("/topics", HTTP_ACCEPT="text/html")
    assert b"&lt;b&gt;" in response.content and b"<b>" not in response.content


def test_list_topics_html_links_reach_names_with_url_characters(client):
    client.put("/topics/a%23b")
    client.put("/topics/c%3Fx%3D1")
    links = re.findall(r'href="([^"]+)"', client.get("/topics", HTTP_ACCEPT="text/html").content.decode())
    assert links == ["/topics/a%23b", "/topics/c%3Fx%3D1"]
    assert all(client.get(link, headers={"X-Id": "0"}).status_code == 204 for link in links)  # found, empty


def test_list_topics_regex(client):
    client.put("/topics/alpha")
    client.put("/topics/beta")
    assert client.get("/topics?regex=^al").content == b"alpha"
    assert client.get("/topics?regex=^AL").content == b""  # case-sensitive, as haraqa's server
    response = client.get("/topics?regex=(")
    assert (response.status_code, response["X-Errors"]) == (400, "invalid regex")


def test_list_topics_prefix_and_suffix_as_go_clients_send_them(client):
    for name in ("app/a", "app/b", "web/app", "web/b"):
        client.put(f"/topics/{name}")
    assert client.get("/topics?prefix=app/&suffix=&regex=").content == b"app/a,app/b"
    assert client.get("/topics?prefix=&suffix=/b&regex=").content == b"app/b,web/b"
    assert client.get("/topics?prefix=web&suffix=b&regex=").content == b"web/b"
    assert client.get("/topics?prefix=app&regex=b$").content == b"app/b"  # every filter applies


def test_topic_filters_are_go_regexps(client):
    """haraqa's server filters with Go's regexp, RE2 syntax: POSIX classes and \\pL work,
    lookbehind and backreferences (Python's re only) are invalid."""
    for name in ("alpha", "beta7", "g/amma"):
        client.put(f"/topics/{name}")
    assert client.get("/topics", {"regex": "^[[:alpha:]]+$"}).content == b"alpha"
    assert client.get("/topics", {"regex": r"^\pL+\d$"}).content == b"beta7"
    for python_only in ("(?<=g)/", r"(a)\1"):
        response = client.get("/topics", {"regex": python_only})
        assert (response.status_code, response["X-Errors"]) == (400, "invalid regex")


def test_delete_is_idempotent(client):
    client.put("/topics/t")
    assert client.delete("/topics/t").status_code == 204
    assert client.delete("/topics/t").status_code == 204
    assert consume(client, "t").status_code == 412


def test_answers_without_a_body_carry_no_content_type(client):
    """As haraqa's: a 204 has nothing to type (Django would call it text/html)."""
    client.put("/topics/t")
    answers = [
        produce(client, "t", [b"x"]),
        client.patch("/topics/t", '{"truncate": 0}', content_type="application/json"),
        consume(client, "t", "5"),
        client.delete("/topics/t"),
    ]
    assert [(a.status_code, a.has_header("Content-Type")) for a in answers] == [(204, False)] * 4
    assert answers[2]["X-Errors"] == "no content"


def test_patch_truncates_and_reports_offsets(client):
    client.put("/topics/t")
    produce(client, "t", [b"x"] * 12)
    response = client.patch("/topics/t", json.dumps({"truncate": 6}), content_type="application/json")
    assert (response.status_code, response.json()) == (200, {"minOffset": 5, "maxOffset": 12})
    assert client.patch("/topics/t", '{"truncate": 0}', content_type="application/json").status_code == 204
    response = client.patch("/topics/t", '{"before": "2999-01-01T00:00:00Z"}', content_type="application/json")
    assert response.json() == {"minOffset": 10, "maxOffset": 12}


def test_patch_bodies_read_as_gos_decoder_reads_them(client):
    """haraqa decodes the body into its request struct: field names match in any case, unknown
    fields are ignored, JSON null is an empty request (204, nothing to do), and a negative id
    removes every segment but the active one."""
    client.put("/topics/t")
    produce(client, "t", [b"x"] * 12)  # segments of 5: 0, 5, 10
    patch = functools.partial(client.patch, "/topics/t", content_type="application/json")
    assert patch('{"truncate": 0, "compact": true}').status_code == 204
    assert patch("null").status_code == 204
    response = patch('{"Truncate": 6, "owner": "x"}')
    assert (response.status_code, response.json()) == (200, {"minOffset": 5, "maxOffset": 12})
    response = patch('{"truncate": -1}')
    assert (response.status_code, response.json()) == (200, {"minOffset": 10, "maxOffset": 12})


@pytest.mark.parametrize("path", ["/topics/t", "/topics"])
def test_options_echoes_the_preflight(client, path):
    response = client.options(path, headers={
        "Access-Control-Request-Headers": "X-Sizes", "Access-Control-Request-Method": "POST"})
    assert (response.status_code, response.content, response.has_header("Content-Type")) == (200, b"", False)
    assert response["Access-Control-Allow-Headers"] == "X-Sizes"
    assert response["Access-Control-Allow-Methods"] == "POST"


def test_consumer_group_advances(client):
    client.put("/topics/t")
    produce(client, "t", [b"a", b"b", b"c"])
    group = {"X-Consumer-Group": "workers"}
    assert body(client.get("/topics/t", headers={"X-Id": "-1", "X-Limit": "2", **group})) == b"ab"
    assert body(client.get("/topics/t", headers={"X-Limit": "2", **group})) == b"c"
    assert client.get("/topics/t", headers={"X-Limit": "2", **group}).status_code == 204


def test_a_consumer_group_name_is_the_utf_8_the_client_sent(client, api_volumes):
    from queues.storage.layout import GROUPS_DIR, TopicDir
    from queues.storage.names import group_file

    client.put("/topics/t")
    produce(client, "t", [b"a", b"b", b"c"])
    as_wsgi_reads_it = "grüppe".encode().decode("latin-1")  # haraqa's Go client sends UTF-8
    for group, expected in ((as_wsgi_reads_it, b"ab"), ("grüppe", b"c")):  # latin-1 bytes read as themselves
        headers = {"X-Consumer-Group": group, "X-Limit": "2"}
        assert body(client.get("/topics/t", headers={"X-Id": "-1", **headers})) == expected
    assert os.listdir(os.path.join(TopicDir(api_volumes[0], "t").path, GROUPS_DIR)) == [group_file("grüppe")]


def test_start_and_end_times_are_in_gos_ansic_layout(client):
    """As haraqa's Go server formats them (time.ANSIC, UTC): the day is padded with a space."""
    from queues.api.views import _ansic_time

    assert _ansic_time(0) == "Thu Jan  1 00:00:00 1970"
    assert _ansic_time(1_000_000_000) == "Sun Sep  9 01:46:40 2001"
    assert _ansic_time(1_795_000_000) == "Wed Nov 18 11:06:40 2026"
    client.put("/topics/t")
    before = int(time.time())
    produce(client, "t", [b"a", b"b"])
    response = consume(client, "t")
    stamps = {_ansic_time(second) for second in range(before, int(time.time()) + 1)}
    assert response["X-Start-Time"] in stamps and response["X-End-Time"] in stamps


def test_head_with_a_consumer_group_shows_the_next_messages_without_taking_them(client):
    client.put("/topics/t")
    produce(client, "t", [b"a", b"b", b"c"])
    group = {"X-Consumer-Group": "workers", "X-Limit": "2"}
    head = read(client.head("/topics/t", headers=group))
    assert (head.status_code, head["X-Sizes"], head.body_bytes) == (200, "1:1", b"")
    assert body(client.get("/topics/t", headers=group)) == b"ab"  # still this group's to take




@pytest.mark.parametrize("method, topic, headers, data, status, error", BAD_INPUT)
def test_bad_input_gets_haraqa_error_and_changes_nothing(client, api_volumes, method, topic, headers, data, status, error):
    client.put("/topics/t")
    produce(client, "t", [b"kept"])
    before = snapshot(api_volumes)
    response = read(client.generic(method, f"/topics/{topic}", data, content_type="application/octet-stream", headers=headers))
    assert response.status_code == status
    assert response["X-Errors"].startswith(error)
    if status != 204 and (method, status) != ("PUT", 412):  # a create's answers have no body
        assert body(response).decode().startswith(error)
    assert snapshot(api_volumes) == before


def test_unknown_paths_and_unexpected_failures_carry_x_errors(client):
    """haraqa's Go client reads an error answer without X-Errors as success."""
    from queues.api.errors import haraqa_exception_handler

    response = client.get("/no/such/path")
    assert (response.status_code, response["X-Errors"], response.content) == (404, "not found", b"not found")
    response = haraqa_exception_handler(RuntimeError("cannot open /srv/volumes/secret"), {})
    assert (response.status_code, response["X-Errors"]) == (500, "internal server error")
    assert b"/" not in response.content
    response = haraqa_exception_handler(Http404("no /srv/volumes/secret"), {})
    assert (response.status_code, response["X-Errors"]) == (404, "not found")
    response = haraqa_exception_handler(DisallowedHost("Invalid HTTP_HOST header: 'evil'"), {})
    assert (response.status_code, response["X-Errors"]) == (400, "bad request")


def test_allowed_hosts_apply_to_every_page_when_set(settings, api_volumes):
    settings.ALLOWED_HOSTS = ["queue.example"]
    Client(HTTP_HOST="queue.example").put("/topics/t")
    before = snapshot(api_volumes)
    stranger = Client(HTTP_HOST="evil.example")
    produce_there = stranger.post("/topics/t", b"x", content_type="application/octet-stream", headers={"X-Sizes": "1"})
    for response in (produce_there, stranger.get("/topics"), stranger.get("/docs/swagger"), stranger.get("/admin/login/")):
        assert (response.status_code, response["X-Errors"]) == (400, "bad request")
    assert snapshot(api_volumes) == before
    allowed = Client(HTTP_HOST="queue.example:4353")
    assert [allowed.get(path).status_code for path in ("/topics", "/docs/swagger")] == [200, 200]


def test_gunicorn_protocol_errors_are_written_as_haraqa_errors():
    from queues.api.errors import write_protocol_error

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        write_protocol_error(server_side, 400, "Bad Request", "Invalid HTTP header name: 'X\x01\r\nSet-Cookie'")
        write_protocol_error(server_side, 500, "Internal Server Error", "")
        server_side.shutdown(socket.SHUT_WR)
        answers = b""
        while chunk := client_side.recv(4096):
            answers += chunk
    first, second = answers.split(b"HTTP/1.1 500", 1)
    text = "invalid request: Invalid HTTP header name: 'X???Set-Cookie'"  # the quoted request cannot add a header
    assert first == (f"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                     f"X-Errors: {text}\r\nContent-Length: {len(text)}\r\n\r\n{text}").encode()
    assert second.endswith(b"X-Errors: internal server error\r\nContent-Length: 21\r\n\r\ninternal server error")


def test_batch_above_the_maximum_is_413(client, settings):
    settings.HARAQA_MAX_BATCH_BYTES = 8
    client.put("/topics/t")
    response = produce(client, "t", [b"123456789"])
    assert response.status_code == 413 and response["X-Errors"]


@pytest.mark.parametrize("sizes", [[0], [9000], [5, 5, 3], list(range(1000)), [2**40, 0, 7], [8191, 8192, 1]])
def test_sizes_header_round_trip(sizes):
    from queues.api.headers import format_sizes, parse_sizes

    assert format_sizes(sizes) == ":".join(map(str, sizes))
    assert parse_sizes(format_sizes(sizes)) == sizes


@pytest.mark.parametrize("value, sizes", [(" 007:10 ", [7, 10]), ("0", [0]), ("00:1", [0, 1])])
def test_sizes_with_leading_zeros_parse_as_decimals(value, sizes):
    from queues.api.headers import parse_sizes

    assert parse_sizes(value) == sizes


@pytest.mark.parametrize("value", [None, "", " ", ":", "1:", ":1", "1::2", "1,2", "1.0", "1e3", "-1", "+1", "1 :2",
                                   "\u0661", "[1]", "9" * 5000, "0" + "9" * 5000])
def test_sizes_that_are_not_plain_decimals_are_refused(value):
    from queues.api.errors import HaraqaError
    from queues.api.headers import parse_sizes

    with pytest.raises(HaraqaError, match="invalid header: X-Sizes"):
        parse_sizes(value)
