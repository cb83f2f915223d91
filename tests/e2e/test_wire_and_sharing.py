"""Live-server checks of the wire contract's error table, shared volumes and memory use."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from ..wire_cases import BAD_INPUT, snapshot

pytestmark = pytest.mark.e2e


def test_bad_input_table_on_a_live_server(server, connect):
    client = connect(server.url)
    client.create("t")
    client.produce("t", [b"kept"])
    for method, topic, headers, data, status, error in BAD_INPUT:
        before = snapshot(server.volumes)
        got_status, got_headers, body = client.request(method, f"/topics/{topic}", data or None, headers)
        assert (got_status, got_headers.get("X-Errors", "")[: len(error)]) == (status, error), (method, topic, headers)
        assert snapshot(server.volumes) == before, (method, topic, headers)
    assert client.consume_all("t") == [b"kept"]


CHUNKED_POST = b"POST /topics/t HTTP/1.1\r\nHost: x\r\nX-Sizes: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
# Requests gunicorn or Django refuse before a view sees them, or whose chunks are malformed:
# (raw request, status, X-Errors prefix). haraqa's Go client takes an answer without X-Errors for success.
MALFORMED_REQUESTS = [
    (CHUNKED_POST + b"zz\r\nabc\r\n0\r\n\r\n", 400, "invalid body: malformed chunked encoding: Invalid chunk size"),
    (CHUNKED_POST + b"3\r\nabcXX0\r\n\r\n", 400, "invalid body: malformed chunked encoding: Invalid chunk terminator"),
    (b"PATCH /topics/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400,
     "invalid body: malformed chunked encoding"),
    (b"POST /topics/t HTTP/1.1\r\nHost: x\r\nX Sizes: 3\r\nContent-Length: 3\r\n\r\nabc", 400,
     "invalid request: Invalid HTTP header name"),
    (b"POST /topics/t HTTP/1.1\r\nHost: x\r\nX-Sizes: 3\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400,
     "invalid request: "),
    (b"POST /topics/t HTTP/1.1\r\nHost: x\r\nX-Sizes: 3\x01\r\nContent-Length: 3\r\n\r\nabc", 400, "invalid request: "),
    (b"GET /topics/t HTTP/9.9\r\nHost: x\r\n\r\n", 400, "invalid request: Invalid HTTP Version: (9, 9)"),
    (b"GARBAGE\r\n\r\n", 400, "invalid request: Invalid HTTP request line: 'GARBAGE'"),
    (b"GET /topics/" + b"t" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "invalid request: "),
    (b"GET /no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not found"),
]


def exchange(port: int, request: bytes) -> http.client.HTTPResponse:
    """Send ``request`` as is on a new connection; the answer, its body read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        response.body = response.read()
        return response


def test_small_answers_carry_their_length_as_haraqas_do(server):
    """Not chunked: Django sets no Content-Length, and gunicorn then chunks even a few bytes."""
    for request in (b"GET /topics HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
                    b"PUT /topics/sized HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    b"GET /topics/missing HTTP/1.1\r\nHost: x\r\nX-Id: 0\r\nConnection: close\r\n\r\n"):
        response = exchange(server.port, request)
        assert response.getheader("Transfer-Encoding") is None, request
        assert int(response.getheader("Content-Length")) == len(response.body), request
        assert len(response.body) > 0 or b"PUT" in request, request  # a create's answer has no body


def test_malformed_requests_get_x_errors_and_change_nothing(server, connect):
    client = connect(server.url)
    client.create("t")
    client.produce("t", [b"kept"])
    for request, status, error in MALFORMED_REQUESTS:
        before = snapshot(server.volumes)
        response = exchange(server.port, request)
        assert (response.status, response.headers.get("X-Errors", "")[: len(error)]) == (status, error), request[:60]
        assert response.headers["Content-Type"] == "text/plain" and response.body.decode() == response.headers["X-Errors"]
        assert snapshot(server.volumes) == before, request[:60]
    assert client.consume_all("t") == [b"kept"]
    scrape = urllib.request.urlopen(f"{server.url}/metrics").read().decode()  # the workers' counts, summed
    refused = {status: f'haraqa_refused_requests_total{{status="{status}"}}' for status in (400, 414)}
    assert f"{refused[400]} 5.0" in scrape and f"{refused[414]} 1.0" in scrape


def test_a_500_never_reveals_server_paths(server, connect):
    client = connect(server.url)
    client.create("t")
    client.produce("t", [b"x"])
    for volume in server.volumes:  # the data file disappears under the server
        subprocess.run(["rm", "-f", f"{volume}/t/{0:020d}.dat"], check=True)
    status, headers, body = client.request("GET", "/topics/t", headers={"X-Id": "0"})
    assert status >= 500
    assert "/" not in headers["X-Errors"] and b"/" not in body


def test_x_sizes_of_a_mebibyte_is_taken_and_a_longer_head_refused(server_factory, volumes, connect):
    """haraqa's Go server takes 1 MiB of headers, so an X-Sizes of 2000 messages (gunicorn's
    default refuses one over 8 KiB) or of 300,000 must work; a longer head is a 431."""
    client = connect(server_factory(volumes, "--workers", "2").url)
    client.create("long")
    kibibytes = [os.urandom(1024) for _ in range(2000)]
    client.produce("long", kibibytes)
    one_byte_each = [bytes([n % 256]) for n in range(300_000)]
    client.produce("long", one_byte_each)  # an X-Sizes of 600,000 characters
    assert client.consume_all("long", limit=5000) == kibibytes + one_byte_each
    junk = {f"X-Junk-{n}": "a" * (600 << 10) for n in range(3)}  # each field fits, the head does not
    status, headers, _ = client.request("GET", "/topics/long", headers={"X-Id": "0", **junk})
    assert (status, headers["X-Errors"]) == (431, "invalid request: request header fields too large")
    client.close()
    assert client.consume("long", -1, 1) == [one_byte_each[-1]]


def test_a_topic_filter_cannot_hold_a_worker(server, connect):
    """Python's re backtracks exponentially on ^(a+)+$ against 40 a's and a dash (hours, with the
    worker's GIL held); RE2, as Go's regexp, answers at once."""
    client = connect(server.url, timeout=30)
    client.create("a" * 40 + "-x")
    status, _, body = client.request("GET", "/topics?regex=%5E(a%2B)%2B%24")
    assert (status, body) == (200, b"")


def test_two_servers_sharing_volumes_see_each_others_writes(server_factory, volumes, connect):
    first = connect(server_factory(volumes, "--workers", "2", "--entries", "7").url)
    second = connect(server_factory(volumes, "--workers", "2", "--entries", "7").url)
    first.create("shared")
    expected = []
    for i in range(40):
        writer = first if i % 2 else second
        batch = [f"{i}-{m}".encode() for m in range(i % 5 + 1)]
        writer.produce("shared", batch)
        expected.extend(batch)
        assert second.consume("shared", -1, 1) == [batch[-1]]
        assert first.consume("shared", -1, 1) == [batch[-1]]
    assert first.consume_all("shared") == expected == second.consume_all("shared")


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_a_100_mb_batch_streams_with_flat_memory(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "1", "--threads", "1")
    client = connect(server.url)
    client.create("big")
    client.produce("big", [b"warm-up"])
    worker = server.workers()[0]
    before = peak_rss_kib(worker)
    messages = [bytes([i]) * (1 << 20) for i in range(100)]
    client.produce("big", messages)
    assert peak_rss_kib(worker) - before < 30 * 1024  # a 100 MB body never sits in memory
    assert client.consume("big", 1, 3) == messages[:3]


def test_fsync_batch_server_syncs_before_answering(server_factory, volumes, connect):
    server = server_factory(volumes, "--workers", "1", "--fsync", "batch")
    client = connect(server.url)
    client.create("durable")
    workers = server.workers()
    threads = [tid for pid in workers for tid in os.listdir(f"/proc/{pid}/task")]
    trace = os.path.join(os.path.dirname(server.log_path), "fsync.strace")
    tracer = subprocess.Popen(["strace", "-f", "-e", "trace=fdatasync,fsync", "-o", trace]
                              + [a for tid in threads for a in ("-p", tid)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # strace attaches
        client.produce("durable", [b"kept", b"safe"])
    finally:
        tracer.terminate()
        tracer.wait(10)
    with open(trace) as f:
        syncs = [line for line in f if "fdatasync(" in line or "fsync(" in line]
    assert len(syncs) >= 3 * len(volumes)  # data, index and commit on every volume
    assert client.consume_all("durable") == [b"kept", b"safe"]
