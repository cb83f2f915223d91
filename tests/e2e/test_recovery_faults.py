"""The recovery fault matrix on real processes: ``manage.py serve`` (gunicorn, 2 workers, 3
volumes) and ``manage.py recover``. Every case asserts the exact messages served after
the repair and byte-identical volumes where repair was possible."""

from __future__ import annotations

import io
import json
import os
import pty
import random
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from queues.storage import Store
from queues.storage.layout import TopicDir
from queues.storage.records import RECORD_SIZE, IndexRecord
from tests.conftest import REPO
from tests.storage.test_recovery import assert_identical, data_offset, flip, seg, while_running

pytestmark = pytest.mark.e2e

ENTRIES = 50
COUNT = 230  # segments 0, 50, 100, 150 and the active one, 200
SERVE = ("--workers", "2", "--threads", "4", "--entries", str(ENTRIES))


def payloads(count: int = COUNT, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 10, 100, 1000, 3000])) for _ in range(count)]


def fill(client, topic: str = "t", count: int = COUNT, seed: int = 7) -> list[bytes]:
    assert client.create(topic) == 201
    sent, rng = payloads(count, seed), random.Random(seed)
    at = 0
    while at < count:
        size = rng.randint(1, 40)
        client.produce(topic, sent[at : at + size])
        at += size
    return sent


def manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env=_env(tmp_path),
        capture_output=True, text=True, timeout=300,
    )


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "HARAQA_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def nonempty_message(sent: list[bytes], at_least: int, size: int = 100) -> int:
    return next(i for i in range(at_least, len(sent)) if len(sent[i]) >= size)


# faults: each damages the volumes (server running or not) and names what recovery reports


def delete_last_volume(volumes, sent):
    shutil.rmtree(volumes[2])
    return "topic missing"


def delete_middle_volume(volumes, sent):
    shutil.rmtree(volumes[1])
    return "topic missing"


def delete_segment_file(volumes, sent):
    os.unlink(seg(volumes[2], 100, "dat"))
    return "segment 100: data file missing"


def truncate_data_file(volumes, sent):
    path, offset = data_offset(volumes[0], nonempty_message(sent, 60), entries=ENTRIES)
    os.truncate(path, offset + 1)
    return "segment 50: data file short"


def truncate_index_file(volumes, sent):
    os.truncate(seg(volumes[2], 0, "idx"), 7 * RECORD_SIZE + 3)
    return "segment 0: index file short (ids 7..49)"


def flip_data_byte(volumes, sent):
    message = nonempty_message(sent, 160)
    path, offset = data_offset(volumes[2], message, entries=ENTRIES)
    flip(path, offset + len(sent[message]) // 2)
    return f"segment 150: data corrupt (ids {message})"


def flip_index_record_byte(volumes, sent):
    flip(seg(volumes[2], 150, "idx"), 9 * RECORD_SIZE + 16)
    return "segment 150: index records corrupt (ids 159)"


def flip_commit_byte(volumes, sent):
    flip(TopicDir(volumes[1], "t").commit_path, 5)
    return "commit record corrupt"


def crashed_writer_leftovers(volumes, sent):
    for volume in volumes:
        with open(seg(volume, 200, "dat"), "ab") as f:
            f.write(b"never committed")
        with open(seg(volume, 200, "idx"), "ab") as f:
            f.write(IndexRecord(12345, 0, 15, 0).pack())
        Path(seg(volume, 230, "dat")).write_bytes(b"a new segment, never committed")
        Path(seg(volume, 230, "idx")).write_bytes(IndexRecord(0, 0, 30, 0).pack())
    return "leftover files removed: 00000000000000000230.dat, 00000000000000000230.idx"


# (fault, how it is repaired): at the restart of the server, or by `manage.py recover` while serving
MATRIX: list[tuple[Callable, str]] = [
    (delete_last_volume, "startup"),
    (delete_middle_volume, "command"),
    (delete_segment_file, "startup"),
    (truncate_data_file, "command"),
    (truncate_index_file, "startup"),
    (flip_data_byte, "command"),
    (flip_data_byte, "startup --full-recover"),
    (flip_index_record_byte, "startup"),
    (flip_commit_byte, "command"),
    (crashed_writer_leftovers, "startup"),
]


@pytest.mark.parametrize(("fault", "route"), MATRIX, ids=[f"{f.__name__}-{r.split()[-1]}" for f, r in MATRIX])
def test_fault_matrix(server_factory, connect, volumes, tmp_path, fault, route):
    server = server_factory(volumes, *SERVE)
    client = connect(server.url)
    sent = fill(client)
    if route.startswith("startup"):
        server.kill()
        expected = fault(volumes, sent)
        server = server_factory(volumes, *SERVE, *route.split()[1:])
        log = server.log()
        assert expected in log and "- repaired" in log and "recovery (" in log, log
        client = connect(server.url)
    else:
        expected = fault(volumes, sent)
        result = manage(tmp_path, "recover", *volumes)
        assert result.returncode == 0, result.stdout + result.stderr
        assert expected in result.stdout and "Result: repaired" in result.stdout, result.stdout
    assert client.consume_all("t", limit=37) == sent
    client.produce("t", [b"after", b"repair"])
    assert client.consume_all("t", start=COUNT - 3) == sent[-3:] + [b"after", b"repair"]
    server.kill()
    assert_identical(volumes)
    assert manage(tmp_path, "recover", "--dry-run", *volumes).returncode == 0


def test_no_recover_skips_the_startup_repair(server_factory, connect, volumes):
    server = server_factory(volumes, *SERVE)
    sent = fill(connect(server.url))
    server.kill()
    os.unlink(seg(volumes[0], 50, "dat"))
    server = server_factory(volumes, *SERVE, "--no-recover")
    assert "recovery" not in server.log()
    assert not os.path.exists(seg(volumes[0], 50, "dat"))
    assert connect(server.url).consume_all("t") == sent  # reads come from the last volume


def test_a_message_corrupt_on_every_volume_is_reported_and_refused(server, connect, volumes, tmp_path):
    client = connect(server.url)
    sent = fill(client)
    message = nonempty_message(sent, 77)
    first = message - message % ENTRIES
    assert message != first
    for volume in volumes:
        path, offset = data_offset(volume, message, entries=ENTRIES)
        flip(path, offset)
    result = manage(tmp_path, "recover", "--json", *volumes)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["lost"] == [{"topic": "t", "first_id": message, "last_id": message}]
    assert (report["unrepairable"], report["ok"]) == (1, False)
    assert result.stderr.endswith("\n1 message unrepairable\n")  # an outcome, told plainly
    # the messages around it are served; the damaged one is refused with a clear 5xx
    assert client.consume("t", first, 100) == sent[first:message]
    status, headers, _ = client.request("GET", "/topics/t", headers={"X-Id": str(message), "X-Limit": "5"})
    assert status == 500
    assert headers["X-Errors"] == (
        f"message {message} of topic 't' is damaged on every volume and cannot be served; consume from {message + 1}"
    )
    assert client.consume_all("t", start=message + 1) == sent[message + 1 :]
    server.kill()
    assert_identical(volumes)
    again = manage(tmp_path, "recover", *volumes)
    assert again.returncode == 1 and f"message {message} is damaged on every volume" in again.stdout
    assert again.stdout.endswith("Result: unrepairable\n")


def test_recovery_killed_with_sigkill_completes_on_the_next_run(server_factory, connect, volumes, tmp_path):
    server = server_factory(volumes, *SERVE)
    client = connect(server.url)
    rng = random.Random(3)
    topics = {f"topic{n:02d}": [rng.randbytes(20_000) for _ in range(100)] for n in range(12)}
    for topic, sent in topics.items():
        client.create(topic)
        for at in range(0, len(sent), 25):
            client.produce(topic, sent[at : at + 25])
    server.kill()
    shutil.rmtree(volumes[0])
    path, offset = data_offset(volumes[2], 60, "topic05", ENTRIES)
    flip(path, offset + 7)
    command = [sys.executable, str(REPO / "manage.py"), "recover", *volumes]
    process = subprocess.Popen(command, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = 0
    for line in process.stderr:
        started += line.startswith("checking topic")
        if started == 3:
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    rerun = manage(tmp_path, "recover", *volumes)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Result: repaired" in rerun.stdout
    server = server_factory(volumes, *SERVE)
    client = connect(server.url)
    for topic, sent in topics.items():
        assert client.consume_all(topic) == sent, topic
    server.kill()
    assert_identical(volumes)


def test_recover_while_producers_are_writing(server, connect, volumes, tmp_path):
    client = connect(server.url)
    sent = fill(client)
    os.unlink(seg(volumes[0], 50, "dat"))
    acknowledged: dict[int, list[bytes]] = {worker: [] for worker in range(3)}

    def producer(worker: int) -> None:
        writer = connect(server.url)
        for n in range(60):
            batch = [f"p{worker}-{n}-{k}".encode() * (k + 1) for k in range(4)]
            writer.produce("t", batch)
            acknowledged[worker].extend(batch)

    runs = while_running([lambda w=w: producer(w) for w in acknowledged], lambda: manage(tmp_path, "recover", *volumes))
    assert all(run.returncode == 0 for run in runs), [run.stdout for run in runs]
    assert "data file missing - repaired" in runs[0].stdout
    served = client.consume_all("t")
    assert served[:COUNT] == sent
    for worker, batches in acknowledged.items():  # each producer's messages, in its order
        assert [m for m in served[COUNT:] if m.startswith(f"p{worker}-".encode())] == batches
    assert len(served) == COUNT + sum(map(len, acknowledged.values()))
    server.kill()
    assert_identical(volumes)
    assert manage(tmp_path, "recover", "--dry-run", *volumes).returncode == 0


def test_reads_are_served_from_another_volume_while_the_last_one_is_damaged(server, connect, volumes):
    client = connect(server.url)
    sent = fill(client)
    os.unlink(seg(volumes[2], 50, "dat"))
    os.truncate(seg(volumes[2], 100, "idx"), 0)
    assert client.consume_all("t", limit=30) == sent
    assert "degraded read: topic 't'" in server.log()
    shutil.rmtree(volumes[2])  # the whole last volume, while serving
    assert client.consume_all("t", limit=30) == sent
    client.produce("t", [b"written through the fault"])  # repairs the topic on the last volume first
    assert client.consume_all("t", start=COUNT - 1) == [sent[-1], b"written through the fault"]
    assert "repaired during a write" in server.log()
    server.kill()
    assert_identical(volumes)


def test_a_produce_failing_on_the_volumes_leaves_no_partial_batch(server, connect, volumes):
    client = connect(server.url)
    assert client.create("big") == 201
    client.produce("big", [b"a" * 1000] * 3)
    limit = 3000 + (5 << 19)  # the batch below fails in its third MiB, after two reached every volume
    processes = _process_tree(server.process.pid)
    for pid in processes:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    megabyte = [bytes([n]) * (1 << 20) for n in range(3)]
    status, headers, _ = client.request("POST", "/topics/big", b"".join(megabyte), {"X-Sizes": "1048576:1048576:1048576"})
    assert (status, headers["X-Errors"]) == (500, "storage i/o error: File too large")
    assert client.consume_all("big") == [b"a" * 1000] * 3
    assert [os.path.getsize(seg(v, 0, "dat", "big")) for v in volumes] == [3000] * 3
    assert [os.path.getsize(seg(v, 0, "idx", "big")) for v in volumes] == [3 * RECORD_SIZE] * 3
    for pid in processes:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    client.produce("big", megabyte)
    assert client.consume_all("big") == [b"a" * 1000] * 3 + megabyte


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs: a volume that fills up for real (needs the right to mount, as root has)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_volume_refuses_the_batch_and_keeps_the_rest(server_factory, connect, volumes, small_disk):
    volumes = [volumes[0], str(small_disk / "vol")]
    client = connect(server_factory(volumes, "--workers", "2").url)
    assert client.create("full") == 201
    batch = [os.urandom(700_000)]
    acknowledged = []
    for _ in range(4):  # 2.8 MB of the 3 MiB
        client.produce("full", batch)
        acknowledged += batch
    status, headers, _ = client.request("POST", "/topics/full", batch[0], {"X-Sizes": "700000"})
    assert (status, headers["X-Errors"]) == (500, "storage i/o error: No space left on device")
    assert client.consume_all("full") == acknowledged
    assert [os.path.getsize(seg(v, 0, "dat", "full")) for v in volumes] == [2_800_000] * 2
    small = [os.urandom(200_000)]  # what still fits
    client.produce("full", small)
    assert client.consume_all("full") == acknowledged + small
    assert_identical(volumes)


def _process_tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in os.listdir(f"/proc/{current}/task"):
            children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            pending.extend(map(int, children))
    return found


# the command's interface


def test_recover_exit_codes_for_usage_errors(volumes, tmp_path):
    Path(volumes[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(volumes[0]).write_text("a file, not a directory")
    cases = [
        (("--no-such-flag",), "unrecognized arguments"),
        (("--topic", "missing", *volumes[1:]), "topic does not exist: missing"),
        (("--topic", "../escape", *volumes[1:]), "invalid topic"),
        (tuple(volumes), "is not a directory"),
        ((volumes[1], volumes[1] + "/"), "are the same directory"),
    ]
    for args, message in cases:
        result = manage(tmp_path, "recover", *args)
        assert (result.returncode, message in result.stderr) == (2, True), (args, result.stderr)


def test_recover_tells_its_outcome_plainly_on_the_command_line_and_as_command_error_in_code(volumes, tmp_path):
    store = Store(volumes)
    store.prepare_volumes()
    store.create_topic("t")
    shutil.rmtree(os.path.join(volumes[0], "t"))
    result = manage(tmp_path, "recover", "--dry-run", *volumes)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, "problems found (dry run)")
    with pytest.raises(CommandError) as raised:  # not SystemExit, for callers in code
        call_command("recover", "--dry-run", *volumes, stdout=io.StringIO(), stderr=io.StringIO())
    assert (str(raised.value), raised.value.returncode) == ("problems found (dry run)", 1)


def test_recover_shows_a_bar_on_a_terminal_and_lines_in_a_pipe(server, connect, volumes, tmp_path):
    client = connect(server.url)
    fill(client)
    fill(client, "nested/topic", count=60, seed=2)
    piped = manage(tmp_path, "recover", *volumes)
    assert piped.returncode == 0
    lines = piped.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["checking topic 'nested/topic'", "checking topic 't'"]
    assert lines[0].endswith("(0% done)") and "\r" not in piped.stderr
    table = piped.stdout.splitlines()
    assert table[0].split() == "topics segments checked bytes checked bytes written repaired unrepairable".split()
    assert table[1].split()[:2] == ["2", "7"] and table[1].split()[-2:] == ["0", "0"]
    assert table[-1] == "Result: healthy"
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "recover", *volumes],
        cwd=REPO, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=terminal,
    )
    os.close(terminal)
    drawn = _read_all(main).decode()
    assert process.wait(timeout=60) == 0
    assert "\r[" in drawn and "100%" in drawn and "#" * 30 in drawn and "checking topic" not in drawn


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return out
