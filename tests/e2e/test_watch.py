"""The topic watch websocket (``GET /ws/topics``) against a real ``manage.py serve``."""

from __future__ import annotations

import os
import re
import signal
import struct
import time
import urllib.request

import pytest

from tests.conftest import wait_until

from .client import HaraqaClient
from .websocket import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WAIT, RawWebSocket, close_payload

GRACEFUL_TIMEOUT = 30  # serve's gunicorn graceful_timeout

pytestmark = pytest.mark.e2e


@pytest.fixture
def ws(server):
    sockets: list[RawWebSocket] = []

    def connect(*args, **kwargs) -> RawWebSocket:
        sockets.append(RawWebSocket.connect(server.port, *args, **kwargs))
        return sockets[-1]

    yield connect
    for sock in sockets:
        sock.close()


@pytest.fixture
def client(server, connect) -> HaraqaClient:
    return connect(server.url)


def test_handshake_answers_101_with_the_accept_key(ws, client):
    client.create("t")
    socket_ = ws(topics=["t"])
    assert socket_.status == 101
    assert socket_.headers["upgrade"].lower() == "websocket"
    assert socket_.headers["sec-websocket-accept"] == socket_.expected_accept()


def test_a_produce_to_a_watched_topic_sends_its_name(ws, client):
    client.create("Watched")
    client.create("other")
    socket_ = ws(topics=["WATCHED"])
    client.produce("other", [b"x"])
    client.produce("watched", [b"hello", b"world"])
    assert socket_.frame() == (OP_TEXT, b"watched")  # the unwatched topic sent nothing before it
    client.produce("other", [b"y"])
    assert socket_.nothing_within(0.5)


def test_topic_names_in_x_topics_are_utf_8_as_haraqas_go_client_sends_them(ws, client):
    from urllib.parse import quote

    client.create(quote("héllo/日本"))
    socket_ = ws(topics=["HÉLLO/日本"])  # the raw UTF-8 bytes in the header, as the Go client writes them
    assert socket_.status == 101
    client.produce(quote("héllo/日本"), [b"x"])
    assert socket_.frame() == (OP_TEXT, "héllo/日本".encode())


def test_topics_from_several_headers_comma_lists_and_the_path(ws, client):
    for topic in ("a", "b", "c", "d/e"):
        client.create(topic)
    socket_ = ws("/ws/topics/d/e", topics=["a", "b, c"])
    assert socket_.status == 101
    received = set()
    for topic in ("b", "d/e", "a", "c"):
        client.produce(topic, [b"m"])
        received.add(socket_.frame()[1].decode())
    assert received == {"a", "b", "c", "d/e"}


def test_a_watch_of_hundreds_of_topics_one_header_each(ws, client):
    """Go's client sends one X-Topics line per topic; gunicorn's default allows 100 header lines."""
    topics = [f"many/{n}" for n in range(300)]
    for topic in topics:
        client.create(topic)
    socket_ = ws(topics=topics)
    assert socket_.status == 101
    client.produce("many/299", [b"m"])
    assert socket_.frame() == (OP_TEXT, b"many/299")


def test_deleting_every_watched_topic_closes_with_1001(ws, client):
    client.create("one")
    client.create("two")
    socket_ = ws(topics=["one", "two"])
    assert client.request("DELETE", "/topics/one")[0] == 204
    assert socket_.nothing_within(0.5)  # one watched topic is left
    assert client.request("DELETE", "/topics/two")[0] == 204
    opcode, payload = socket_.frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OP_CLOSE, 1001)
    socket_.send(OP_CLOSE, payload[:2])
    with pytest.raises(EOFError):
        socket_.frame()


def test_a_client_close_is_answered_with_a_close(ws, client):
    client.create("t")
    socket_ = ws(topics=["t"])
    socket_.send(OP_PING, b"are you there")
    assert socket_.frame() == (OP_PONG, b"are you there")
    socket_.send(OP_CLOSE, close_payload(1000))
    assert socket_.frame() == (OP_CLOSE, close_payload(1000))
    with pytest.raises(EOFError):
        socket_.frame()


def test_a_watch_outlives_seconds_of_silence(ws, client):
    client.create("t")
    socket_ = ws(topics=["t"])
    assert socket_.nothing_within(5)
    client.produce("t", [b"late"])
    assert socket_.frame() == (OP_TEXT, b"t")


@pytest.mark.parametrize(
    ("path", "topics", "upgrade", "status", "error"),
    [
        ("/ws/topics", [], True, 400, "invalid topic"),
        ("/ws/topics", ["a/../b"], True, 400, "invalid topic"),
        ("/ws/topics", ["exists", "missing"], True, 412, "topic does not exist"),
        ("/ws/topics/missing", [], True, 412, "topic does not exist"),
        ("/ws/topics", ["exists"], False, 400, "invalid websocket"),
    ],
)
def test_refusals_come_before_any_upgrade(ws, client, path, topics, upgrade, status, error):
    client.create("exists")
    socket_ = ws(path, topics=topics, upgrade=upgrade)
    assert (socket_.status, socket_.headers.get("x-errors")) == (status, error)


def test_a_wrong_websocket_version_is_refused(ws, client):
    client.create("t")
    socket_ = ws(topics=["t"], upgrade=False, extra={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "8"})
    assert (socket_.status, socket_.headers.get("x-errors")) == (400, "invalid websocket")
    assert socket_.headers["sec-websocket-version"] == "13"


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_watches_hold_no_worker_thread_and_leave_nothing_behind(server_factory, volumes):
    # one worker with two threads: the watches share the worker's hub, the threads serve the API
    server = server_factory(volumes, "--workers", "1", "--threads", "2")
    (worker,) = server.workers()
    client = HaraqaClient(server.url, timeout=WAIT)
    client.create("t")
    client.produce("t", [b"warm-up"])  # the worker keeps the topic's files open from here on
    RawWebSocket.connect(server.port, topics=["t"]).close()  # the first watch starts the hub
    time.sleep(0.5)  # let the hub notice that client left
    before = _descriptors(worker)
    for round_ in range(2):
        watches = [RawWebSocket.connect(server.port, topics=["t"]) for _ in range(60)]
        assert {w.status for w in watches} == {101}
        client.produce("t", [b"%d" % round_])
        for socket_ in watches[::2]:  # half leave politely, half just go
            assert socket_.frame() == (OP_TEXT, b"t")
            socket_.send(OP_CLOSE, close_payload(1000))
            assert socket_.frame() == (OP_CLOSE, close_payload(1000))
            with pytest.raises(EOFError):
                socket_.frame()
        for socket_ in watches:
            socket_.close()
        wait_until(lambda: _descriptors(worker) <= before, seconds=WAIT)
    assert len(client.consume_all("t")) == 3
    client.close()
    assert "Traceback" not in server.log()
    assert " GET /ws/topics 101 " in server.log()


def test_stopping_the_server_closes_open_watches_with_1001(server, ws, client):
    client.create("t")
    socket_ = ws(topics=["t"])
    os.killpg(server.process.pid, signal.SIGTERM)
    # without the worker hook the watch would hold its worker until the 30 s graceful timeout
    opcode, payload = socket_.frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OP_CLOSE, 1001)
    # the server then stops within gunicorn's graceful timeout (30 s); usually in a second or
    # two, but rarely (once in CI, 2026-11-27) a worker took over 10 s
    assert server.process.wait(timeout=GRACEFUL_TIMEOUT + WAIT) == 0


def _watches_metric(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=WAIT) as response:
        text = response.read().decode()
    return float(re.search(r"^haraqa_topic_watches (\S+)$", text, re.M).group(1))


def test_the_watch_gauge_counts_every_workers_watches(server_factory, volumes):
    server = server_factory(volumes, "--workers", "3")
    client = HaraqaClient(server.url, timeout=WAIT)
    client.create("t")
    watches = [RawWebSocket.connect(server.port, topics=["t"]) for _ in range(12)]
    assert _watches_metric(server.url) == 12  # whichever worker answers the scrape
    for socket_ in watches[:5]:
        socket_.close()
    wait_until(lambda: _watches_metric(server.url) == 7, seconds=WAIT)
    for socket_ in watches[5:]:
        socket_.close()
    wait_until(lambda: _watches_metric(server.url) == 0, seconds=WAIT)
    client.close()
