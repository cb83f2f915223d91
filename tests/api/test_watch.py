"""queues.api.watch on a socket pair, with a real store on tmp volumes: the protocol details
the e2e tests cannot reach quickly (keep-alive pings, protocol errors, split frames)."""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from django.test import Client

from queues.api import watch
from queues.storage import Store, TopicNotFound
from tests.e2e.websocket import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWebSocket, close_payload


@pytest.fixture
def store(volumes: list[str]) -> Store:
    store = Store(volumes)
    store.prepare_volumes()
    store.create_topic("t")
    return store


@pytest.fixture
def serve(store: Store) -> Iterator:
    """Run ``serve_watch`` on one end of a socket pair in a thread; yield a client on the other."""
    threads: list[threading.Thread] = []
    clients: list[RawWebSocket] = []
    server_ends: list[socket.socket] = []  # closed here as gunicorn closes them

    def start(topics: list[str], ping_seconds: float = watch.PING_SECONDS) -> RawWebSocket:
        server_end, client_end = socket.socketpair()
        watcher = watch.TopicWatcher(store.volumes, topics)
        thread = threading.Thread(target=watch.serve_watch, args=(server_end, "accept", watcher),
                                  kwargs={"ping_seconds": ping_seconds})
        thread.start()
        threads.append(thread)
        server_ends.append(server_end)
        clients.append(RawWebSocket(client_end))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the watch loop did not end when its client left"
    for server_end in server_ends:
        server_end.close()


def test_handshake_accept_key_is_rfc_6455s_example():
    headers = {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    assert watch.handshake_accept(headers) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for name, bad in [("Upgrade", "h2c"), ("Connection", "close"), ("Sec-WebSocket-Key", "c2hvcnQ="),
                      ("Sec-WebSocket-Key", "not base64!"), ("Sec-WebSocket-Version", "8")]:
        assert watch.handshake_accept({**headers, name: bad}) is None, name


def test_a_topic_on_no_volume_is_refused(store):
    with pytest.raises(TopicNotFound):
        watch.TopicWatcher(store.volumes, ["t", "missing"])


def test_an_idle_watch_answering_pings_stays_and_reports_writes(serve, store):
    client = serve(["t"], ping_seconds=0.2)
    assert client.status == 101 and client.headers["sec-websocket-accept"] == "accept"
    for _ in range(5):  # longer than the two silent ping intervals after which a client is dropped
        assert client.frame(skip_pings=False) == (OP_PING, b"")
        client.send(OP_PONG)
    store.produce("t", [3], io.BytesIO(b"abc"))
    assert client.frame() == (OP_TEXT, b"t")


def test_a_client_that_answers_no_ping_is_dropped(serve):
    client = serve(["t"], ping_seconds=0.2)
    with pytest.raises(EOFError):
        client.frame()  # pings skipped, then the end of the connection


def test_a_frame_split_into_single_bytes_is_understood(serve):
    client = serve(["t"])
    mask = os.urandom(4)
    payload = b"hi"
    data = bytes([0x80 | OP_PING, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i] for i, b in enumerate(payload))
    for byte in data:
        client.send_raw(bytes([byte]))
    assert client.frame() == (OP_PONG, b"hi")


def test_an_unmasked_client_frame_is_a_protocol_error(serve):
    client = serve(["t"])
    client.send_raw(bytes([0x80 | OP_TEXT, 2]) + b"hi")
    assert client.frame() == (OP_CLOSE, close_payload(1002))
    client.send(OP_CLOSE, close_payload(1002))
    with pytest.raises(EOFError):
        client.frame()


def test_an_oversized_client_frame_is_refused_with_1009(serve):
    client = serve(["t"])
    client.send_raw(bytes([0x80 | OP_TEXT, 0x80 | 127]) + struct.pack("!Q", watch.MAX_CLIENT_FRAME + 1))
    assert client.frame() == (OP_CLOSE, close_payload(1009))


def test_text_frames_from_the_client_are_ignored(serve, store):
    client = serve(["t"])
    client.send(OP_TEXT, b"hello server")
    store.produce("t", [1], io.BytesIO(b"x"))
    assert client.frame() == (OP_TEXT, b"t")


def test_a_recreated_topic_is_not_a_write_but_its_next_produce_is(serve, store):
    store.create_topic("u")
    client = serve(["t", "u"])
    store.produce("u", [1], io.BytesIO(b"x"))
    assert client.frame() == (OP_TEXT, b"u")
    store.delete_topic("u")
    assert client.nothing_within(0.3)
    store.create_topic("u")
    assert client.nothing_within(0.3)
    store.produce("u", [1], io.BytesIO(b"y"))
    assert client.frame() == (OP_TEXT, b"u")


def test_a_topic_lost_from_the_last_volume_is_watched_on_the_others(serve, store):
    client = serve(["t"])
    os.unlink(f"{store.volumes[-1]}/t/.commit")
    assert client.nothing_within(0.3)  # still on the other volumes: not deleted
    store.delete_topic("t")
    assert client.frame() == (OP_CLOSE, close_payload(1001))


@pytest.mark.django_db
def test_without_gunicorns_socket_a_valid_watch_is_501(api_volumes):
    client = Client()
    assert client.put("/topics/t").status_code == 201
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    response = client.get("/ws/topics/T", headers=handshake)
    assert response.status_code == 501 and "gunicorn" in response["X-Errors"]
    assert client.get("/ws/topics", headers={**handshake, "X-Topics": ", "})["X-Errors"] == "invalid topic"
