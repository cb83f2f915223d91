"""A bounded schemathesis run against a live server: no 5xx and no answer that contradicts the schema."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from queues.api.schema import EXAMPLE_TOPIC

from ..e2e.client import HaraqaClient

pytestmark = pytest.mark.e2e

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


def test_live_server_conforms_to_its_schema(server_factory, volumes, tmp_path):
    server = server_factory(volumes, "--workers", "2", "--entries", "3")
    client = HaraqaClient(server.url)  # the schema's example topic holds messages, so its examples reach a 200
    client.create(EXAMPLE_TOPIC)
    client.produce(EXAMPLE_TOPIC, [b"hello", b"world", b"abc"])
    client.close()
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{server.url}/api/schema/",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", "100", "--seed", "20261126", "--workers", "1",
        "--request-timeout", "30", "--suppress-health-check", "all",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]

    # the run reached the success paths, not only the refusals
    answered = Counter(
        (method, "/topics/{topic}" if path.startswith("/topics/") else path.split("?")[0], status)
        for method, path, status in re.findall(r"^\S+ \[[^\]]+\] (\S+) (\S+) (\d{3}) ", server.log(), re.M)
    )
    for seen in [("PUT", "/topics/{topic}", "201"), ("POST", "/topics/{topic}", "204"),
                 ("GET", "/topics/{topic}", "200"), ("PATCH", "/topics/{topic}", "200"), ("GET", "/topics", "200")]:
        assert answered[seen], (seen, answered)
    assert not [key for key in answered if key[2].startswith("5")]
