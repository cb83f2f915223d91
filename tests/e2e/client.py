"""A minimal haraqa HTTP client over one keep-alive connection, as haraqa's Go client behaves."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


class HaraqaClient:
    def __init__(self, url: str, timeout: float = 60):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.headers, response.read()

    def create(self, topic: str) -> int:
        return self.request("PUT", f"/topics/{topic}")[0]

    def produce(self, topic: str, messages: list[bytes]) -> int:
        sizes = ":".join(str(len(m)) for m in messages)
        status, headers, _ = self.request("POST", f"/topics/{topic}", b"".join(messages), {"X-Sizes": sizes})
        if status != 204:
            raise AssertionError(f"produce answered {status}: {headers.get('X-Errors')}")
        return status

    def consume(self, topic: str, msg_id: int, limit: int) -> list[bytes]:
        status, headers, body = self.request("GET", f"/topics/{topic}", headers={"X-Id": str(msg_id), "X-Limit": str(limit)})
        if status == 204:
            return []
        if status != 200:
            raise AssertionError(f"consume answered {status}: {headers.get('X-Errors')}")
        sizes = [int(s) for s in headers["X-Sizes"].split(":")]
        assert sum(sizes) == len(body)
        out, at = [], 0
        for size in sizes:
            out.append(body[at : at + size])
            at += size
        return out

    def consume_all(self, topic: str, start: int = 0, limit: int = 1000) -> list[bytes]:
        out: list[bytes] = []
        while batch := self.consume(topic, start + len(out), limit):
            out.extend(batch)
        return out

    def close(self) -> None:
        self.connection.close()
