"""A minimal raw-socket RFC 6455 client for the topic watch tests (no websocket library needed):
it sends the handshake, masks its frames and reads whole server frames."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WAIT = 5.0  # generous: a frame normally arrives within ~0.1 s
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def close_payload(code: int) -> bytes:
    return struct.pack("!H", code)


class RawWebSocket:
    """One client connection; ``status`` and ``headers`` are the server's answer to the request."""

    def __init__(self, sock: socket.socket, request: bytes = b""):
        self.sock = sock
        self.sock.settimeout(WAIT)
        if request:
            self.sock.sendall(request)
        self.buffer = b""
        self.status, self.headers = self._read_head()

    @classmethod
    def connect(
        cls, port: int, path: str = "/ws/topics", topics: list[str] = (), extra: dict | None = None,
        upgrade: bool = True,
    ) -> RawWebSocket:
        """Send ``GET path`` with one ``X-Topics`` header per topic and, if ``upgrade``, a valid handshake."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if upgrade:
            lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                      "Sec-WebSocket-Version: 13"]
        lines += [f"X-Topics: {topic}" for topic in topics]
        lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        client = cls(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        client.key = key
        return client

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            assert data, f"connection closed before the answer: {self.buffer!r}"
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def expected_accept(self) -> str:
        return base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, opcode: int, payload: bytes = b"") -> None:
        """One masked frame, as clients must send them."""
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(4096)
            if not data:
                raise EOFError(f"connection closed with {self.buffer!r} unread")
            self.buffer += data
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def frame(self, timeout: float = WAIT, skip_pings: bool = True) -> tuple[int, bytes]:
        """The next frame (pings skipped unless asked): (opcode, payload). Raises TimeoutError, EOFError."""
        deadline = time.monotonic() + timeout
        while True:
            first, second = self._read_exact(2, deadline)
            assert not second & 0x80, "server frames must not be masked"
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(2, deadline))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(8, deadline))
            payload = self._read_exact(length, deadline)
            if first & 0x0F != OP_PING or not skip_pings:
                return first & 0x0F, payload

    def nothing_within(self, seconds: float) -> bool:
        try:
            opcode, payload = self.frame(timeout=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {opcode} {payload!r}")

    def close(self) -> None:
        self.sock.close()
