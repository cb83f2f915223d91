"""``manage.py serve``'s haraqa flags (-cors, -docs, -prometheus), their environment variables, the
startup lines and the one-line-per-request log, against real servers."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from queues.management.commands.serve import resets_queued_connections

from ..conftest import REPO, listening_sockets, wait_until
from ..e2e.client import HaraqaClient

pytestmark = pytest.mark.e2e

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-sizes, content-type"}


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_defaults_cors_docs_metrics_startup_lines_and_request_log(server_factory, volumes):
    server = server_factory(volumes, "--workers", "2")
    client = HaraqaClient(server.url)
    try:
        client.create("logged")
        client.produce("logged", [b"hello", b"abc"])
        status, headers, body = client.request("GET", "/topics/logged", headers={"X-Id": "0", "X-Limit": "5"})
        assert (status, body) == (200, b"helloabc")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "X-Sizes" in headers["Access-Control-Expose-Headers"]
        status, headers, _ = client.request("OPTIONS", "/topics/logged", headers=PREFLIGHT)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "POST"
        assert headers["Access-Control-Allow-Headers"] == "x-sizes, content-type"
        assert client.request("GET", "/topics/missing", headers={"X-Id": "0"})[1]["Access-Control-Allow-Origin"] == "*"
    finally:
        client.close()
    for page in ("/docs/", "/docs/swagger", "/docs/redocs", "/docs/swagger.yaml", "/api/schema/", "/metrics"):
        assert status_of(f"{server.url}{page}") == 200, page

    log = server.log()
    assert f"docs {server.url}/docs/ (swagger {server.url}/docs/swagger, redoc {server.url}/docs/redocs)" in log
    assert f"metrics {server.url}/metrics; cors on" in log
    assert "volumes " + ", ".join(volumes) in log
    assert f"Listening at: {server.url}, a socket per worker (" in log  # not gunicorn's empty list
    # the note follows this machine's setting (the cases of the setting are checked below)
    assert ("note: net.ipv4.tcp_migrate_req is 0" in log) == resets_queued_connections()
    lines = re.findall(r"^127\.0\.0\.1 \[[^\]]+\] (\S+) (\S+) (\d{3}) (\d+) [\d.]+ms$", log, re.M)
    assert ("PUT", "/topics/logged", "201", "0") in lines
    assert ("POST", "/topics/logged", "204", "0") in lines
    assert ("GET", "/topics/logged", "200", "8") in lines  # sent with sendfile, still counted
    assert ("GET", "/topics/missing", "412", "20") in lines


def test_flags_and_environment_turn_cors_docs_metrics_and_request_log_off(server_factory, volumes):
    server = server_factory(
        volumes, "--workers", "1", "--no-cors", "--no-docs", "--no-access-log", env={"HARAQA_PROMETHEUS": "0"}
    )
    for page in ("/docs/", "/docs/swagger", "/docs/redocs", "/docs/swagger.yaml", "/api/schema/", "/metrics"):
        assert status_of(f"{server.url}{page}") == 404, page
    client = HaraqaClient(server.url)
    try:
        status, headers, _ = client.request("GET", "/topics")
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        status, headers, _ = client.request("OPTIONS", "/topics/any", headers=PREFLIGHT)
        assert status == 200 and "Access-Control-Allow-Origin" not in headers  # browsers refuse: CORS is off
        assert headers["Access-Control-Allow-Methods"] == "POST"  # the wire contract's echo stays
    finally:
        client.close()
    log = server.log()
    assert "docs off; metrics off; cors off" in log
    assert not re.search(r"^127\.0\.0\.1 \[", log, re.M)


def test_help_documents_haraqa_flags_and_their_environment():
    run = subprocess.run(
        [sys.executable, "manage.py", "serve", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(run.stdout.split())
    for flag, env in (("--port", "HARAQA_PORT"), ("--entries", "HARAQA_ENTRIES"), ("--limit", "HARAQA_LIMIT"),
                      ("--client-timeout", "HARAQA_CLIENT_TIMEOUT"),
                      ("--cors, --no-cors", "HARAQA_CORS"), ("--docs, --no-docs", "HARAQA_DOCS"),
                      ("--prometheus, --no-prometheus", "HARAQA_PROMETHEUS")):
        assert flag in text and env in text, flag
    assert "haraqa -http" in text and "haraqa -prometheus" in text


def test_serve_raises_the_descriptor_limit_and_kept_files_stay_within_a_quarter(tmp_path):
    code = """
import resource
import django
django.setup()
from queues.management.commands.serve import MAX_DESCRIPTORS, raise_descriptor_limit
from queues.storage import handles
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
assert handles.descriptor_budget() == 64
raise_descriptor_limit()
wanted = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == max(256, wanted)
"""
    env = {"DJANGO_SETTINGS_MODULE": "haraqa_site.settings", "HARAQA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_serve_imports_every_view_before_forking_its_workers(tmp_path):
    code = """
import sys
import django
django.setup()
from haraqa_site.wsgi import application
from queues.management.commands.serve import import_views
views = ("queues.api.views", "rest_framework.views", "drf_spectacular.views")
assert not any(name in sys.modules for name in views)  # a worker would import them on its first request
import_views()
assert all(name in sys.modules for name in views)
"""
    env = {"DJANGO_SETTINGS_MODULE": "haraqa_site.settings", "HARAQA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def serve_elsewhere(port: int, tmp_path) -> subprocess.CompletedProcess:
    env = {"HARAQA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "manage.py", "serve", "--port", str(port), "--no-recover", str(tmp_path / "volume")]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_volumes_that_would_share_files_stop_startup(tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "vol")
    env = {"HARAQA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for second, message in ((tmp_path / "alias", "are the same directory"), (tmp_path / "vol" / "x", "is inside volume")):
        command = [sys.executable, "manage.py", "serve", "--port", "1", str(tmp_path / "vol"), str(second)]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert list((tmp_path / "vol").iterdir()) == []  # nothing created, on neither volume


@pytest.mark.parametrize(("content", "resets"), [("0\n", True), ("1\n", False), (None, False)])
def test_the_startup_note_on_queued_connections_follows_the_kernel_setting(tmp_path, content, resets):
    sysctl = tmp_path / "tcp_migrate_req"
    if content is not None:  # absent: not Linux, or a kernel before 5.14
        sysctl.write_text(content)
    assert resets_queued_connections(str(sysctl)) is resets


def test_every_worker_listens_and_a_taken_port_stops_startup(server_factory, volumes, tmp_path):
    server = server_factory(volumes, "--workers", "3")
    wait_until(lambda: listening_sockets(server.port) >= 3)  # it answers once the first worker listens
    assert listening_sockets(server.port) == 3  # SO_REUSEPORT: the kernel spreads connections over them
    second = serve_elsewhere(server.port, tmp_path / "second")
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use" in second.stderr
    assert listening_sockets(server.port) == 3
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = serve_elsewhere(other_program.getsockname()[1], tmp_path / "third")
    assert taken.returncode == 1 and "Address already in use" in taken.stderr


RECEIVE_PIECES = """
import resource, socket, sys, threading
import django
django.setup()
from queues.management.commands.serve import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
sender, receiver = socket.socketpair()
piece = b"x" * (128 << 10)

def receive():  # in a thread, as gunicorn's gthread workers read a large body: recv(1 MiB) at a time
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(800):
        sender.sendall(piece)
        assert len(receiver.recv(1 << 20)) == len(piece)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)

reader = threading.Thread(target=receive)
reader.start()
reader.join()
"""


def test_serve_keeps_freed_memory_so_large_reads_do_not_fault_pages_in_again(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "haraqa_site.settings", "HARAQA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def faults_per_mebibyte(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", RECEIVE_PIECES, mode], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return float(run.stdout)

    untuned, tuned = faults_per_mebibyte("default"), faults_per_mebibyte("tuned")
    assert tuned < 20 and untuned > 4 * tuned, (untuned, tuned)
