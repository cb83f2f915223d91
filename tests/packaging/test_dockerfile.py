"""The Dockerfile cannot rot: hadolint lints it, and its install and start steps run for real in a
fresh venv (no Docker engine here), then the started server answers and its healthcheck passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import free_port
from .dockerfile import Sandbox, parse

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def by_keyword(keyword: str) -> list[str]:
    return [i.argument for i in parse(DOCKERFILE) if i.keyword == keyword]


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    run = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_image_is_slim_non_root_and_starts_serve_on_4353_for_everyone():
    instructions = parse(DOCKERFILE)
    assert instructions[0].keyword == "FROM" and instructions[0].argument == "python:3.11-slim"
    assert by_keyword("USER") == ["10001"]
    assert by_keyword("EXPOSE") == ["4353"]
    assert json.loads(by_keyword("ENTRYPOINT")[0]) == ["python", "manage.py", "serve"]
    assert json.loads(by_keyword("CMD")[0]) == ["/vol1"]
    assert "HARAQA_BIND=0.0.0.0" in " ".join(by_keyword("ENV"))  # inside the container only
    assert len(by_keyword("HEALTHCHECK")) == 1


@pytest.mark.e2e
def test_build_steps_install_and_the_entrypoint_serves(tmp_path):
    sandbox = Sandbox(root=tmp_path / "image", context=REPO)
    for instruction in parse(DOCKERFILE):
        sandbox.apply(instruction)

    app = sandbox.path("/app")
    assert (app / "manage.py").exists() and (app / "queues" / "storage" / "store.py").exists()
    for left_out in (".git", ".venv", "data", "tests", "bench"):
        assert not (app / left_out).exists(), left_out
    assert not list(app.rglob("__pycache__"))
    assert (app / "staticfiles" / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js").exists()
    assert not sandbox.path("/data/secret_key").exists(), "a secret key was baked into the image"
    assert (sandbox.venv / "bin" / "gunicorn").exists() and not (sandbox.venv / "bin" / "pytest").exists()
    assert "useradd --system --uid 10001" in sandbox.shim_log.read_text()

    port = free_port()
    env = sandbox.process_env(HARAQA_BIND="127.0.0.1", HARAQA_PORT=str(port))  # tests bind loopback only
    command = [sandbox.remap(arg) for arg in json.loads(by_keyword("ENTRYPOINT")[0]) + json.loads(by_keyword("CMD")[0])]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                urllib.request.urlopen(f"{url}/topics", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)

        healthcheck = json.loads(by_keyword("HEALTHCHECK")[0].split(" CMD ", 1)[1])
        assert subprocess.run(healthcheck, cwd=app, env=env, timeout=30).returncode == 0

        urllib.request.urlopen(urllib.request.Request(f"{url}/topics/docker", method="PUT"), timeout=10).close()
        produce = urllib.request.Request(f"{url}/topics/docker", data=b"hello", headers={"X-Sizes": "5"}, method="POST")
        assert urllib.request.urlopen(produce, timeout=10).status == 204
        consume = urllib.request.Request(f"{url}/topics/docker", headers={"X-Id": "0"})
        assert urllib.request.urlopen(consume, timeout=10).read() == b"hello"
        assert (sandbox.path("/vol1") / "docker").is_dir()
        assert sandbox.path("/data/secret_key").exists()
        for page in ("/docs/swagger", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", "/metrics"):
            assert urllib.request.urlopen(f"{url}{page}", timeout=10).status == 200, page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()
