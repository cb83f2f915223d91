"""queues.api.watch (with its websocket frames and queues.storage.watching) on a socket pair,
with a real store on tmp volumes: the protocol details the e2e tests cannot reach quickly
(keep-alive pings, protocol errors, split frames)."""

from __future__ import annotations

import io
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from django.test import Client

from queues.api import watch, websocket
from queues.storage import Corruption, Store, TopicNotFound
from queues.storage.layout import TopicDir
from queues.storage.watching import CommitRecord, TopicWatcher
from tests.conftest import wait_until
from tests.faults import flip_byte
from tests.e2e.websocket import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWebSocket, close_payload


@pytest.fixture
def store(volumes: list[str]) -> Store:
    store = Store(volumes)
    store.prepare_volumes()
    store.create_topic("t")
    return store


@pytest.fixture
def hub_factory() -> Iterator:
    hubs: list[watch.WatchHub] = []

    def make(**kwargs) -> watch.WatchHub:
        hubs.append(watch.WatchHub(**kwargs))
        return hubs[-1]

    yield make
    for hub in hubs:
        hub.stop(timeout=5)


@pytest.fixture
def serve(store: Store, hub_factory) -> Iterator:
    """Hand one end of a socket pair to a hub, as the view hands it gunicorn's socket; yield
    a client on the other end."""
    hubs: list[watch.WatchHub] = []
    clients: list[RawWebSocket] = []

    def start(topics: list[str], ping_seconds: float = watch.PING_SECONDS) -> RawWebSocket:
        hubs.append(hub_factory(ping_seconds=ping_seconds))
        clients.append(_adopted(hubs[-1], store, topics))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for hub in hubs:
        wait_until(lambda: hub.count == 0, seconds=10)  # the hub forgets a client that left


def _adopted(hub: watch.WatchHub, store: Store, topics: list[str]) -> RawWebSocket:
    server_end, client_end = socket.socketpair()
    assert hub.adopt(server_end, "accept", TopicWatcher(store.volumes, topics))
    server_end.close()  # as gunicorn closes its socket after the request: the hub has its own
    return RawWebSocket(client_end)


def test_handshake_accept_key_is_rfc_6455s_example():
    headers = {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    assert websocket.handshake_accept(headers) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for name, bad in [("Upgrade", "h2c"), ("Connection", "close"), ("Sec-WebSocket-Key", "c2hvcnQ="),
                      ("Sec-WebSocket-Key", "not base64!"), ("Sec-WebSocket-Version", "8")]:
        assert websocket.handshake_accept({**headers, name: bad}) is None, name


def test_a_topic_on_no_volume_is_refused(store):
    with pytest.raises(TopicNotFound):
        TopicWatcher(store.volumes, ["t", "missing"])


def test_a_topic_whose_commit_no_volume_can_read_is_a_corruption_not_a_missing_topic(store):
    for volume in store.volumes:
        flip_byte(TopicDir(volume, "t").commit_path, 0)
    with pytest.raises(Corruption, match="commit record of topic 't' is damaged on every volume"):
        TopicWatcher(store.volumes, ["t"])


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
    client.send_raw(bytes([0x80 | OP_TEXT, 0x80 | 127]) + struct.pack("!Q", websocket.MAX_CLIENT_FRAME + 1))
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


def test_what_the_old_owner_sends_never_reaches_the_client(store, hub_factory):
    server_end, client_end = socket.socketpair()
    assert hub_factory().adopt(server_end, "accept", TopicWatcher(store.volumes, ["t"]))
    with pytest.raises(BrokenPipeError):
        server_end.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")  # what gunicorn tries next
    server_end.close()
    client = RawWebSocket(client_end)
    assert client.status == 101 and client.headers["sec-websocket-accept"] == "accept"
    store.produce("t", [1], io.BytesIO(b"x"))
    assert client.frame() == (OP_TEXT, b"t")
    client.close()


def test_one_hub_serves_hundreds_of_watches_and_reads_each_topic_once(store, hub_factory, monkeypatch):
    store.create_topic("u")
    polled: list[str] = []
    real_check = CommitRecord.may_have_changed

    def counted_check(record):
        polled.append(record.dirs[0].topic)
        return real_check(record)

    monkeypatch.setattr(CommitRecord, "may_have_changed", counted_check)
    hub = hub_factory(poll_seconds=0.1)
    watching_t = [_adopted(hub, store, ["t"]) for _ in range(150)]
    watching_u = [_adopted(hub, store, ["u"]) for _ in range(150)]
    store.produce("t", [1], io.BytesIO(b"x"))
    assert all(client.frame() == (OP_TEXT, b"t") for client in watching_t)
    assert all(client.nothing_within(0.01) for client in watching_u)
    store.produce("u", [1], io.BytesIO(b"y"))
    assert all(client.frame() == (OP_TEXT, b"u") for client in watching_u)
    polled.clear()
    time.sleep(0.55)
    assert 2 <= len(polled) <= 14 and set(polled) == {"t", "u"}  # about 6 polls of 2 topics, not of 300 watches
    for client in watching_t + watching_u:
        client.close()
    wait_until(lambda: hub.count == 0, seconds=10)
    assert hub._by_topic == {}


def test_a_full_hub_refuses_and_leaves_the_socket_alone(store, hub_factory):
    hub = hub_factory(max_watches=1)
    first = _adopted(hub, store, ["t"])
    server_end, client_end = socket.socketpair()
    assert not hub.adopt(server_end, "accept", TopicWatcher(store.volumes, ["t"]))
    server_end.sendall(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")  # the view's refusal gets through
    refused = RawWebSocket(client_end)
    assert refused.status == 503
    refused.close()
    first.close()
    wait_until(lambda: hub.count == 0, seconds=10)
    again = _adopted(hub, store, ["t"])  # the slot is free again
    assert again.status == 101
    again.close()
    server_end.close()


def test_a_watch_that_began_between_polls_reports_only_later_writes(store, hub_factory):
    hub = hub_factory(poll_seconds=0.3)
    early = _adopted(hub, store, ["t"])
    store.produce("t", [1], io.BytesIO(b"x"))
    late = _adopted(hub, store, ["t"])  # saw the write above before the hub's next poll
    assert early.frame() == (OP_TEXT, b"t")
    assert late.nothing_within(0.5)
    store.produce("t", [1], io.BytesIO(b"y"))
    assert early.frame() == late.frame() == (OP_TEXT, b"t")
    early.close()
    late.close()


def test_stopping_the_hub_closes_every_watch_with_1001(store, hub_factory):
    hub = hub_factory()
    clients = [_adopted(hub, store, ["t"]) for _ in range(3)]
    hub.stop(timeout=0)
    for client in clients:
        assert client.frame() == (OP_CLOSE, close_payload(1001))
        client.send(OP_CLOSE, close_payload(1001))
        with pytest.raises(EOFError):
            client.frame()
        client.close()
    wait_until(lambda: hub.count == 0, seconds=10)
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        assert not hub.adopt(server_end, "accept", TopicWatcher(store.volumes, ["t"]))


def test_topics_beyond_the_kept_commit_files_are_read_by_path(store, hub_factory, monkeypatch):
    monkeypatch.setattr(watch, "KEPT_RECORDS", 1)
    for topic in ("u", "v"):
        store.create_topic(topic)
    hub = hub_factory()
    client = _adopted(hub, store, ["t", "u", "v"])
    for topic in ("v", "t", "u", "v"):
        store.produce(topic, [1], io.BytesIO(b"x"))
        assert client.frame() == (OP_TEXT, topic.encode())
    assert sum(record.kept is not None for record in hub._records.values()) == 1
    client.close()
