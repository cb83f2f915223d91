"""The shortest end-to-end path: create, produce, consume through a real gunicorn."""

from __future__ import annotations

import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def request(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def test_produce_then_consume_round_trip(server):
    assert request("PUT", f"{server.url}/topics/smoke")[0] == 201
    status, _, _ = request("POST", f"{server.url}/topics/smoke", b"helloworldabc", {"X-Sizes": "5:5:3"})
    assert status == 204
    status, headers, body = request("GET", f"{server.url}/topics/smoke", headers={"X-Id": "0", "X-Limit": "10"})
    assert (status, headers["X-Sizes"], body) == (200, "5:5:3", b"helloworldabc")
