"""docs/WIRE.md's bad-input table, shared by the test-client and the live-server tests."""

from __future__ import annotations

import os

# Each case runs against a topic "t" holding one message "kept".
BAD_INPUT = [
    # (method, topic, headers, body, status, error text prefix)
    ("POST", "missing", {"X-Sizes": "1"}, b"x", 412, "topic does not exist"),
    ("GET", "missing", {"X-Id": "0"}, b"", 412, "topic does not exist"),
    ("PATCH", "missing", {}, b'{"truncate": 3}', 412, "topic does not exist"),
    ("PUT", "t", {}, b"", 412, "topic already exists"),
    ("POST", "t", {}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": ""}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "a"}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "1:-1"}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "-1"}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "4294967296"}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "9" * 5000}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "1::1"}, b"xx", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "18446744073709551615:1"}, b"xx", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "9223372036854775807:9223372036854775807:2"}, b"x", 400, "invalid header: X-Sizes"),
    ("POST", "t", {"X-Sizes": "2:2"}, b"abc", 400, "invalid body"),
    ("POST", "t", {"X-Sizes": "2"}, b"abc", 400, "invalid body"),
    ("GET", "t", {}, b"", 400, "invalid message id"),
    ("GET", "t", {"X-Id": "one"}, b"", 400, "invalid message id"),
    ("GET", "t", {"X-Id": "0", "X-Limit": "ten"}, b"", 400, "invalid message limit"),
    ("GET", "t", {"X-Id": "1_0"}, b"", 400, "invalid message id"),  # Python's int() would take these
    ("GET", "t", {"X-Id": "9223372036854775808"}, b"", 400, "invalid message id"),  # beyond int64, as Go
    ("GET", "t", {"X-Id": "-9223372036854775809"}, b"", 400, "invalid message id"),
    ("GET", "t", {"X-Id": "0", "X-Limit": "1_0"}, b"", 400, "invalid message limit"),
    ("GET", "t", {"X-Id": "0", "X-Limit": "99999999999999999999"}, b"", 400, "invalid message limit"),
    ("GET", "t", {"X-Id": "9" * 5000}, b"", 400, "invalid message id"),  # past int()'s digit limit
    ("GET", "t", {"X-Id": "99"}, b"", 204, "no content"),
    ("PUT", "a/../b", {}, b"", 400, "invalid topic"),
    ("PUT", ".hidden", {}, b"", 400, "invalid topic"),
    ("PUT", "a//b", {}, b"", 400, "invalid topic"),
    ("PUT", "a%5Cb", {}, b"", 400, "invalid topic"),
    ("PUT", "a%00b", {}, b"", 400, "invalid topic"),
    ("PATCH", "t", {}, b"", 400, "invalid body: invalid json entry"),
    ("PATCH", "t", {}, b"{", 400, "invalid body: invalid json entry"),
    ("PATCH", "t", {}, b"[1]", 400, "invalid body: invalid json entry"),
    ("PATCH", "t", {}, b'{"truncate": "x"}', 400, "invalid body: invalid json entry"),
    ("PATCH", "t", {}, b'{"truncate": 9223372036854775808}', 400, "invalid body: invalid json entry"),
    ("PATCH", "t", {}, b'{"before": "yesterday"}', 400, "invalid body: invalid json entry"),
]


def snapshot(volumes: list[str]) -> dict[str, bytes]:
    """Every file under the volumes with its bytes: "changes nothing on disk" compares two."""
    out = {}
    for volume in volumes:
        for root, _, files in os.walk(volume):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.join(root, name)] = f.read()
    return out
