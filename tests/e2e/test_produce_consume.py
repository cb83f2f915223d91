"""End-to-end against ``manage.py serve`` (several gunicorn workers, 3 volumes) on loopback."""

from __future__ import annotations

import filecmp
import glob
import http.client
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from django.conf import settings

from ..conftest import listening_sockets, tcp_sockets, wait_until
from .client import HaraqaClient

pytestmark = pytest.mark.e2e


def segment_files(volume: str, topic: str) -> list[str]:
    return sorted(n for n in os.listdir(os.path.join(volume, topic)) if n.endswith((".dat", ".idx")))


def assert_identical_volumes(volumes: list[str], topic: str) -> None:
    names = segment_files(volumes[0], topic)
    for volume in volumes[1:]:
        assert segment_files(volume, topic) == names
        match, mismatch, errors = filecmp.cmpfiles(
            os.path.join(volumes[0], topic), os.path.join(volume, topic), names + [".commit"], shallow=False
        )
        assert (mismatch, errors) == ([], [])


def assert_whole_batches(stored: list[bytes], acknowledged: list[list[bytes]], batch_length) -> None:
    """Every acknowledged batch is in ``stored`` once and whole, and ``stored`` is whole batches
    (acknowledged or not) back to back: messages named ``t<producer>-b<number>-m<index>-...``,
    ``batch_length(number)`` of them to a batch."""
    assert len(set(stored)) == len(stored)
    positions = {m: i for i, m in enumerate(stored)}
    for batch in acknowledged:
        first = positions[batch[0]]
        assert stored[first : first + len(batch)] == batch
    names, at = [m.split(b"-")[:3] for m in stored], 0
    while at < len(names):
        producer, number = names[at][:2]
        count = batch_length(int(number[1:]))
        assert names[at : at + count] == [[producer, number, b"m%d" % m] for m in range(count)]
        at += count


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def random_messages(rng: random.Random, count: int) -> list[bytes]:
    return [rng.randbytes(rng.choice([0, 1, 7, 100, 1000, 3000])) for _ in range(count)]


def test_twelve_thousand_messages_across_segments(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "2", "--entries", "5000")
    rng = random.Random(2)
    client = connect(server.url)
    assert client.create("big") == 201
    sent: list[bytes] = []
    while len(sent) < 12_000:
        batch = random_messages(rng, rng.randint(1, 700))[: 12_000 - len(sent)]
        client.produce("big", batch)
        sent.extend(batch)
    assert client.consume_all("big") == sent
    for msg_id, limit in [(0, 1), (4999, 1), (4999, 2), (5000, 5000), (4990, 100), (9999, 3), (11_999, 10),
                          (123, 4877), (7000, 0), (10_000, -1)] + [(rng.randrange(12_000), rng.randint(1, 6000)) for _ in range(40)]:
        got = client.consume("big", msg_id, limit)
        assert got, (msg_id, limit)
        assert len(got) <= limit or limit <= 0
        segment_end = (msg_id // 5000 + 1) * 5000
        assert len(got) == min(segment_end, 12_000) - msg_id if limit <= 0 else min(limit, min(segment_end, 12_000) - msg_id)
        assert got == sent[msg_id : msg_id + len(got)]
    assert client.consume("big", -1, 10) == [sent[-1]]
    assert client.consume("big", 12_000, 10) == []
    assert_identical_volumes(volumes, "big")
    assert segment_files(volumes[0], "big") == [f"{i:020d}.{s}" for i in (0, 5000, 10000) for s in ("dat", "idx")]


def _produce_singles(url: str, worker: int, count: int) -> None:
    client = HaraqaClient(url)
    for i in range(count):
        client.produce("shared", [f"worker-{worker}-message-{i}-".encode() + os.urandom(16).hex().encode()])
    client.close()


def test_four_processes_of_concurrent_produces(server, connect):
    connect(server.url).create("shared")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_produce_singles, args=(server.url, w, 150)) for w in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    messages = connect(server.url).consume_all("shared")
    assert len(messages) == 600
    for worker in range(4):
        mine = [m for m in messages if m.startswith(f"worker-{worker}-".encode())]
        assert [int(m.split(b"-")[3]) for m in mine] == list(range(150))  # each producer's order kept
        assert all(len(m) == len(mine[0].split(b"-message-")[0]) + len(b"-message-") + len(m.split(b"-")[3]) + 1 + 32 for m in mine)
    assert_identical_volumes(server.volumes, "shared")


def test_consumers_of_one_group_share_the_messages_without_duplicates(server, connect):
    """At most once per group, with its consumers spread over the workers: every message reaches
    exactly one of them, while a producer keeps writing."""
    producer = connect(server.url)
    producer.create("work")
    sent = [f"job-{n}".encode() for n in range(1500)]
    producer.produce("work", sent[:500])
    received: list[list[bytes]] = [[] for _ in range(4)]
    failures: list[str] = []  # an assert in a thread would only end that thread
    done = threading.Event()

    def consumer(n: int) -> None:
        client = connect(server.url)
        idle = 0
        while idle < 20:
            status, headers, body = client.request(
                "GET", "/topics/work", headers={"X-Consumer-Group": "workers", "X-Id": "-1", "X-Limit": "7"}
            )
            if status == 204:
                idle = idle + 1 if done.is_set() else 0
                time.sleep(0.01)
                continue
            if status != 200:
                failures.append(f"{status} {headers.get('X-Errors')}")
                return
            at = 0
            for size in map(int, headers["X-Sizes"].split(":")):
                received[n].append(body[at : at + size])
                at += size

    threads = [threading.Thread(target=consumer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for start in range(500, 1500, 100):
        producer.produce("work", sent[start : start + 100])
    done.set()
    for t in threads:
        t.join(60)
    assert failures == []
    everything = [m for mine in received for m in mine]
    assert sorted(everything) == sorted(sent)  # none lost, none twice
    assert all(mine == sorted(mine, key=sent.index) for mine in received)  # each in order
    assert sum(1 for mine in received if mine) >= 2  # really shared


def test_reads_and_writes_racing_deletes_and_truncates_get_no_server_error(server, connect):
    """Consumers and producers while another client deletes, re-creates and truncates the topic
    (segments of 50): every answer is a haraqa answer (412, 416, 204...), never a 5xx, and the
    volumes end identical. Reads used to find a segment's data gone under them: 500."""
    connect(server.url).create("storm")
    statuses: set[int] = set()
    stop = threading.Event()

    def loop(send) -> None:
        client = connect(server.url)
        while not stop.is_set():
            statuses.add(send(client))

    def produce(client) -> int:
        return client.request("POST", "/topics/storm", b"m" * 70, {"X-Sizes": ":".join(["10"] * 7)})[0]

    def consume(client) -> int:
        return client.request("GET", "/topics/storm", headers={"X-Id": "0", "X-Limit": "30"})[0]

    changes = itertools.cycle([("DELETE", None), ("PUT", None), ("PATCH", b'{"truncate": 100}')])

    def churn(client) -> int:
        method, body = next(changes)
        time.sleep(0.01)
        return client.request(method, "/topics/storm", body)[0]

    threads = [threading.Thread(target=loop, args=(send,)) for send in (produce, produce, consume, consume, churn)]
    for t in threads:
        t.start()
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(30)
    assert max(statuses) < 500, statuses
    assert "ERROR" not in server.log()
    client = connect(server.url)
    client.request("PUT", "/topics/storm")
    client.produce("storm", [b"last"])
    assert_identical_volumes(server.volumes, "storm")


def _produce_batches(url: str, producer: int, batches: int, acked) -> None:
    client = HaraqaClient(url)
    for b in range(batches):
        batch = [f"p{producer}-b{b}-m{m}-".encode() + bytes([producer]) * m for m in range(37)]
        client.produce("race", batch)
        acked.put((producer, b))
    client.close()


def test_two_producers_racing_across_segment_boundaries(server, connect):
    """The Go original lost acknowledged messages here (segments of 50, batches of 37)."""
    connect(server.url).create("race")
    context = multiprocessing.get_context("spawn")
    acked = context.Queue()
    processes = [context.Process(target=_produce_batches, args=(server.url, p, 30, acked)) for p in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    messages = connect(server.url).consume_all("race", limit=17)
    assert len(messages) == 2 * 30 * 37
    for start in range(0, len(messages), 37):  # batches stay whole and in order
        batch = messages[start : start + 37]
        producer, number = batch[0].split(b"-")[:2]
        assert batch == [b"%s-%s-m%d-" % (producer, number, m) + bytes([int(producer[1:])]) * m for m in range(37)]
    assert_identical_volumes(server.volumes, "race")


def test_kill_9_during_produce_loses_no_acknowledged_message(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "2", "--entries", "40")
    connect(server.url).create("crash")
    acknowledged: list[list[bytes]] = []
    stop = threading.Event()

    def producer(n: int) -> None:
        client = connect(server.url, timeout=10)
        b = 0
        while not stop.is_set():
            batch = [f"t{n}-b{b}-m{m}-".encode() + os.urandom(m * 50) for m in range(1 + b % 13)]
            try:
                client.produce("crash", batch)
            except (OSError, http.client.HTTPException, AssertionError):
                return
            acknowledged.append(batch)
            b += 1

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acknowledged) > 10

    restarted = server_factory(volumes, "--workers", "2", "--entries", "40")
    client = connect(restarted.url)
    stored = client.consume_all("crash", limit=33)
    positions = {m: i for i, m in enumerate(stored)}
    for batch in acknowledged:
        first = positions[batch[0]]
        assert stored[first : first + len(batch)] == batch
    client.produce("crash", [b"after restart"])
    assert client.consume("crash", -1, 1) == [b"after restart"]
    assert_identical_volumes(volumes, "crash")


def test_workers_killed_mid_produce_leave_no_torn_batch_for_the_others(server_factory, volumes, connect):
    """kill -9 of single workers while the server goes on: the next writer trims what a killed
    one left half-written, so every acknowledged batch is kept and every stored batch is whole."""
    server = server_factory(volumes, "--workers", "3", "--entries", "40")
    connect(server.url).create("kill")
    acknowledged: list[list[bytes]] = []
    stop = threading.Event()

    def producer(n: int) -> None:
        client, b = connect(server.url, timeout=10), 0
        while not stop.is_set():
            batch = [b"t%d-b%d-m%d-" % (n, b, m) + os.urandom(m * 300) for m in range(1 + b % 17)]
            try:
                client.produce("kill", batch)
                acknowledged.append(batch)
            except (OSError, http.client.HTTPException):  # its worker was killed: reconnect
                client = connect(server.url, timeout=10)
            b += 1

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    kills = 0
    for _ in range(12):
        time.sleep(random.uniform(0.1, 0.4))
        workers = server.workers()
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)
            kills += 1
    stop.set()
    for thread in threads:
        thread.join(30)
    assert kills >= 10 and len(acknowledged) > 100
    # connections queued on a killed worker's own listening socket were reset: wait for all three
    wait_until(lambda: listening_sockets(server.port) == 3)

    stored = connect(server.url).consume_all("kill", limit=33)
    assert_whole_batches(stored, acknowledged, lambda number: 1 + number % 17)
    # a worker killed as it began a segment may have left that segment's files on some volumes,
    # past the commit; a write reaching that id (at most --entries messages on) recreates them
    connect(server.url).produce("kill", [b"%d" % m for m in range(40)])
    assert_identical_volumes(volumes, "kill")
    assert " 500 " not in server.log()


def test_a_server_restarted_right_after_kill_9_of_its_master_gets_the_port(server_factory, volumes, connect):
    """kill -9 of the gunicorn master alone, as a supervisor kills haraqa's single process: its
    workers die with it. An orphaned worker kept its listening socket until its requests were
    done, here a stalled upload (for the client timeout), so the restart was refused with
    "Address already in use"."""
    server = server_factory(volumes, "--workers", "3", "--client-timeout", "60")
    client = connect(server.url)
    client.create("stall")
    batches = [[b"b%d-m%d" % (b, m) for m in range(b % 5 + 1)] for b in range(30)]
    for batch in batches:
        client.produce("stall", batch)
    client.close()
    workers = server.workers()
    stalled = send_head(server.port, 1000, 10)
    # a worker has read what was sent: the server side of the connection has nothing queued
    wait_until(lambda: any(row[3] == "01" and row[4].endswith(":00000000") for row in tcp_sockets(server.port)))

    server.process.kill()
    server.process.wait(10)
    restarted = server_factory(volumes, "--workers", "3", port=server.port)

    assert [pid for pid in workers if running(pid)] == []
    stalled.settimeout(10)
    try:
        answer = stalled.recv(4096)
    except ConnectionResetError:
        answer = b""
    stalled.close()
    assert answer == b""  # cut, never acknowledged
    assert connect(restarted.url).consume_all("stall") == [m for batch in batches for m in batch]
    assert_identical_volumes(volumes, "stall")
    wait_until(lambda: listening_sockets(server.port) == 3)  # every new worker got the port
    assert restarted.process.poll() is None


def test_servers_sharing_volumes_keep_every_batch_when_one_is_killed_and_restarted(server_factory, volumes, connect):
    """Two servers share the volumes and producers write through both; one is killed with kill -9
    of its master (its workers die with it) and restarted at once on its port, twice. Whatever
    that cut off, the other server goes on appending after it."""
    options = ("--workers", "2", "--entries", "40")
    servers = [server_factory(volumes, *options) for _ in range(2)]
    connect(servers[0].url).create("shared")
    acknowledged: list[list[bytes]] = []
    refused: list[str] = []
    stop = threading.Event()

    def producer(n: int) -> None:
        url = servers[n % 2].url  # a restarted server keeps its port
        client, b = connect(url, timeout=10), 0
        while not stop.is_set():
            batch = [b"t%d-b%d-m%d-" % (n, b, m) + os.urandom(m * 200) for m in range(1 + b % 13)]
            try:
                client.produce("shared", batch)
                acknowledged.append(batch)
            except (OSError, http.client.HTTPException):  # its server was killed: until it is back
                time.sleep(0.05)
                client = connect(url, timeout=10)
            except AssertionError as answer:
                refused.append(str(answer))
            b += 1

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(2):
        time.sleep(1)
        servers[1].process.kill()
        servers[1].process.wait(10)
        servers[1] = server_factory(volumes, *options, port=servers[1].port)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert refused == [] and len(acknowledged) > 100
    assert sum(batch[0].startswith((b"t1-", b"t3-")) for batch in acknowledged) > 10  # the killed one's too
    stored = connect(servers[0].url).consume_all("shared", limit=33)
    assert_whole_batches(stored, acknowledged, lambda number: 1 + number % 13)
    assert connect(servers[1].url).consume_all("shared", limit=33) == stored
    connect(servers[1].url).produce("shared", [b"%d" % m for m in range(40)])  # past a segment a kill began
    assert_identical_volumes(volumes, "shared")


def test_sigterm_during_produce_answers_every_accepted_request(server_factory, volumes, connect):
    """A graceful stop finishes what it accepted: producers see only 204s (or a connection
    refused/closed once the workers are gone), never a 5xx, and every 204 is stored."""
    server = server_factory(volumes, "--workers", "2")
    connect(server.url).create("stop")
    acknowledged: list[bytes] = []
    statuses: list[int] = []
    stop = threading.Event()

    def producer(n: int) -> None:
        client, i = connect(server.url, timeout=10), 0
        while not stop.is_set():
            message = f"p{n}-{i}-".encode() + os.urandom(200)
            i += 1
            try:
                status, _, _ = client.request("POST", "/topics/stop", message, {"X-Sizes": str(len(message))})
            except (OSError, http.client.HTTPException):
                client.close()
                time.sleep(0.02)
                continue
            statuses.append(status)
            if status == 204:
                acknowledged.append(message)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acknowledged) > 200)
    os.killpg(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    stop.set()
    for t in threads:
        t.join(30)

    assert set(statuses) == {204}
    restarted = server_factory(volumes, "--workers", "2")
    assert sorted(connect(restarted.url).consume_all("stop")) == sorted(acknowledged)
    assert_identical_volumes(volumes, "stop")

def test_chunked_request_bodies(server, connect):
    client = connect(server.url)
    client.create("chunked")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/topics/chunked", body=iter([b"hel", b"lowor", b"ld"]), headers={"X-Sizes": "5:5"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert (response.status, response.read()) == (204, b"")
    connection.request("POST", "/topics/chunked", body=iter([b"abc", b"def"]), headers={"X-Sizes": "2:2"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert (response.status, response.headers["X-Errors"]) == (400, "invalid body: longer than the sum of X-Sizes")
    response.read()
    connection.close()
    assert client.consume_all("chunked") == [b"hello", b"world"]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PATCH", "/topics/chunked", body=iter([b'{"trunc', b'ate": 1}']), encode_chunked=True)
    response = connection.getresponse()  # 204 (nothing to do) if the body were not read
    assert (response.status, json.loads(response.read())) == (200, {"minOffset": 0, "maxOffset": 2})
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PATCH", "/topics/chunked", body=iter([b" " * (3 << 20), b"{}"]), encode_chunked=True)
    response = connection.getresponse()  # held in memory: bounded as Django bounds a body with a length
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert (response.status, response.headers["X-Errors"]) == (400, f"invalid body: larger than {limit} bytes")
    connection.close()


def send_head(port: int, size: int, sent: int) -> socket.socket:
    """A produce of one ``size``-byte message whose client sends only ``sent`` bytes of it."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(f"POST /topics/stall HTTP/1.1\r\nHost: x\r\nX-Sizes: {size}\r\n"
                       f"Content-Length: {size}\r\n\r\n".encode() + b"s" * sent)
    return connection


def read_head(connection: socket.socket) -> bytes:
    connection.settimeout(30)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(4096)
        assert chunk, f"connection closed before the response head: {head!r}"
        head += chunk
    return head


def test_a_stalled_or_reset_producer_frees_the_topic(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "2", "--client-timeout", "1")
    client = connect(server.url)
    client.create("stall")
    client.produce("stall", [b"before"])
    data_file = os.path.join(volumes[0], "stall", f"{0:020d}.dat")
    big = 10 << 20  # over 4 MiB: streamed to the volumes under the topic lock
    stalled = send_head(server.port, big, 6 << 20)
    wait_until(lambda: os.path.getsize(data_file) > 6)  # it holds the lock, part of its body written
    client.produce("stall", [b"after"])  # waits for the lock: without a client timeout, for ever
    head = read_head(stalled)
    stalled.close()
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"X-Errors: invalid body: reading it failed: timed out" in head
    small = send_head(server.port, 1000, 10)  # read before the lock is taken, holding a thread
    assert b"reading it failed: timed out" in read_head(small)
    small.close()
    reset = send_head(server.port, big, 6 << 20)
    wait_until(lambda: os.path.getsize(data_file) > 11)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reset.close()  # a reset, not a clean end: the server's read fails with ECONNRESET
    client.produce("stall", [b"last"])
    assert client.consume_all("stall") == [b"before", b"after", b"last"]
    assert [os.path.getsize(os.path.join(v, "stall", f"{0:020d}.dat")) for v in volumes] == [15] * 3
    assert_identical_volumes(volumes, "stall")
    wait_until(lambda: server.log().count("POST /topics/stall 400 ") == 3)  # the reset is the client's, not a 500
    assert "POST /topics/stall 500 " not in server.log()


def test_a_client_stalled_in_its_head_or_a_small_body_frees_the_thread(server_factory, volumes, connect):
    """gunicorn waits for the rest of a request head, and Django for a PATCH body, with no limit
    of their own: each stalled client below held the only thread until the server stopped. Once
    such a client is dropped, gunicorn's close must not wait for it either: it waited 2 s on the
    loop that serves every connection of the worker."""
    server = server_factory(volumes, "--workers", "1", "--threads", "1", "--client-timeout", "1")
    connect(server.url).create("t")
    stalls = [
        b"GET /topics HTTP/1.1\r\nHost: x\r\nX-Id",  # the head never ends
        b"PATCH /topics/t HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{",
        b"POST /topics/t HTTP/1.1\r\nHost: x\r\nX-Sizes: 20\r\nContent-Length: 20\r\n\r\nabc",
    ]
    for request in stalls:
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            stalled.sendall(request)
            answer = b""
            while chunk := stalled.recv(4096):  # until the server lets go of the connection
                answer += chunk
            probe = connect(server.url, timeout=1.5)  # the 2 s wait would time it out
            assert probe.request("GET", "/topics")[0] == 200
            probe.close()
        if request.startswith(b"GET"):
            assert answer == b""  # dropped without an answer
        else:
            assert answer.startswith(b"HTTP/1.1 400 ") and b"X-Errors: invalid body: reading it failed: timed out" in answer
    assert "in the middle of a request; connection closed" in server.log()
    assert "Traceback" not in server.log() and " 500 " not in server.log()


def sending_stuck(port: int) -> bool:
    """Whether a connection served from ``port`` has bytes its client has not taken."""
    return any(int(row[4].split(":")[0], 16) > 0 for row in tcp_sockets(port))


def test_a_consumer_that_stops_reading_frees_its_thread(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "1", "--threads", "1", "--client-timeout", "1")
    client = connect(server.url)
    client.create("big")
    for _ in range(4):
        client.produce("big", [bytes([n]) * (1 << 20) for n in range(8)])
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /topics/big HTTP/1.1\r\nHost: x\r\nX-Id: 0\r\nX-Limit: 32\r\n\r\n")  # 32 MiB, never read
        wait_until(lambda: sending_stuck(server.port))  # the only thread is blocked sending it
        assert client.consume("big", 31, 1) == [bytes([7]) * (1 << 20)]  # without a deadline: never answered
    assert server.log().count("client took nothing") == 1 and "Traceback" not in server.log()


def test_a_pipelining_client_that_stops_reading_frees_its_thread(server_factory, volumes, connect):
    """Answers queue up in the connection's buffers until one cannot go on; whichever it is, and
    however much of it went out, the deadline frees the thread and the log has one line for it."""
    server = server_factory(volumes, "--workers", "1", "--threads", "1", "--client-timeout", "1")
    client = connect(server.url)
    client.create("ranges")
    for _ in range(4):
        client.produce("ranges", [os.urandom(256 << 10) for _ in range(16)])
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"".join(b"GET /topics/ranges HTTP/1.1\r\nHost: x\r\nX-Id: %d\r\nX-Limit: 1\r\n\r\n" % n
                                 for n in range(1, 64)))  # 63 answers of 256 KiB, never read
        wait_until(lambda: "client took nothing" in server.log(), seconds=WAIT_FOR_CUT_OFF)
        assert len(client.consume("ranges", 63, 1)[0]) == 256 << 10  # the only thread is free again
    assert server.log().count("client took nothing") == 1 and "Traceback" not in server.log()


WAIT_FOR_CUT_OFF = 15


def test_consume_goes_out_through_sendfile(server, connect):
    """Every answer is sent with sendfile; a small one with the socket corked around it, so
    its headers leave with it, and uncorked after it."""
    client = connect(server.url)
    client.create("zero-copy")
    client.produce("zero-copy", [b"x" * 100_000, b"y" * 5])
    workers = server.workers()
    assert workers
    trace = os.path.join(os.path.dirname(server.log_path), "strace")
    threads = [tid for pid in workers for tid in os.listdir(f"/proc/{pid}/task")]
    # -p of a process with -f (which -ff implies): all its threads, and those it starts later
    command = ["strace", "-ff", "-e", "trace=sendfile,setsockopt", "-o", trace] + [a for p in workers for a in ("-p", str(p))]
    tracer = subprocess.Popen(command, stderr=subprocess.DEVNULL)

    def traced_steps() -> str:  # per thread (strace -ff: a file each, in order): C cork, U uncork, B/s a big/small sendfile
        steps = ""
        for name in glob.glob(trace + ".*"):
            with open(name) as f:
                for line in f:
                    if "TCP_CORK" in line:
                        steps += "C" if "TCP_CORK, [1]" in line else "U"
                    elif line.startswith("sendfile("):
                        steps += "s" if line.rstrip().endswith(", 5) = 5") else "B"
            steps += "|"
        return steps

    try:  # strace opens a file per thread as it attaches to it; on a loaded machine that takes a while
        wait_until(lambda: len(glob.glob(trace + ".*")) >= len(threads), seconds=30)
        for _ in range(10):  # until strace, still attaching on a loaded machine, sees the answers
            time.sleep(0.2)
            for _ in range(4):  # several connections: reach every worker
                fresh = connect(server.url)
                assert fresh.consume("zero-copy", 0, 2) == [b"x" * 100_000, b"y" * 5]
                assert fresh.consume("zero-copy", 1, 1) == [b"y" * 5]
                fresh.close()
            time.sleep(0.5)
            if "B" in traced_steps() and "CsU" in traced_steps():
                break
    finally:
        tracer.terminate()
        tracer.wait(10)
    steps = traced_steps()
    assert re.fullmatch(r"((B+|CsU)*\|)+", steps), steps
    assert "B" in steps and "CsU" in steps, steps
