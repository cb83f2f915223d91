"""haraqa's topic watch (``GET /ws/topics``): a minimal RFC 6455 websocket server side.

WSGI has no websockets. The view validates the request and builds a ``TopicWatcher``;
``serve_watch`` then takes over gunicorn's client socket (``environ["gunicorn.socket"]``),
writes the ``101 Switching Protocols`` answer itself and runs the watch in the request's
worker thread: it polls the watched topics' commit records and sends a text frame with the
topic name for every change, answers pings and close frames, pings the client every
``PING_SECONDS`` (a client silent for two of them is dropped, as haraqa's server did) and
closes with 1001 once every watched topic is deleted or the gunicorn worker stops
(``follow_worker`` is the worker's ``post_worker_init`` hook). A watch holds its thread, so a
worker runs at most ``threads - 1`` watches at once: one thread always serves the API.

When it returns, the socket is shut down in both directions: gunicorn's own answer to the
request then fails with EPIPE, which gunicorn logs at debug level only, and the worker
thread is free again. Standard library only; no Django.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Mapping

from queues.storage import Corruption, TopicNotFound
from queues.storage.layout import TopicDir

logger = logging.getLogger(__name__)

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
POLL_SECONDS = 0.05  # how often the commit records are read: one open + pread per topic
PING_SECONDS = 25.0
SEND_TIMEOUT_SECONDS = 10.0  # a client that reads nothing for this long is dropped
CLOSE_WAIT_SECONDS = 1.0  # after our close frame, how long the client's close reply is awaited
MAX_CLIENT_FRAME = 1 << 16  # clients only send control frames; anything larger is refused

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1001, 1002, 1009

_gunicorn_worker = None  # this process's gunicorn worker, once follow_worker has run
_watching = 0  # watches running in this process
_watching_guard = threading.Lock()


def follow_worker(worker) -> None:
    """gunicorn ``post_worker_init`` hook: open watches end with 1001 once ``worker`` stops
    (instead of holding it until the graceful timeout kills it), and leave one of its threads
    to the API."""
    global _gunicorn_worker
    _gunicorn_worker = worker


def _worker_stopping() -> bool:
    return _gunicorn_worker is not None and not _gunicorn_worker.alive


def _take_thread() -> bool:
    """Count a new watch in, unless it would take the last thread, the one kept for the API."""
    global _watching
    with _watching_guard:
        if _gunicorn_worker is not None and _watching >= _gunicorn_worker.cfg.threads - 1:
            return False
        _watching += 1
        return True


def _give_thread_back() -> None:
    global _watching
    with _watching_guard:
        _watching -= 1


class ProtocolError(Exception):
    """A client frame that breaks RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def handshake_accept(headers: Mapping[str, str]) -> str | None:
    """``Sec-WebSocket-Accept`` for a valid RFC 6455 upgrade request, else None."""
    if "websocket" not in _tokens(headers.get("Upgrade", "")):
        return None
    if "upgrade" not in _tokens(headers.get("Connection", "")):
        return None
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        return None
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WEBSOCKET_GUID).digest()).decode("ascii")


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked, unfragmented server frame."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 1 << 16:
        return head + struct.pack("!BH", 126, len(payload)) + payload
    return head + struct.pack("!BQ", 127, len(payload)) + payload


def close_frame(code: int) -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code))


def parse_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    """Take one complete client frame off ``buffer``: (opcode, unmasked payload), or None
    if it is not all there yet. Raises ProtocolError."""
    if len(buffer) < 2:
        return None
    first, second = buffer[0], buffer[1]
    if first & 0x70 or not second & 0x80:  # extension bits unnegotiated; clients must mask
        raise ProtocolError(CLOSE_PROTOCOL_ERROR)
    length, at = second & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,), at = struct.unpack_from("!H", buffer, 2), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,), at = struct.unpack_from("!Q", buffer, 2), 10
    if length > MAX_CLIENT_FRAME:
        raise ProtocolError(CLOSE_TOO_BIG)
    if len(buffer) < at + 4 + length:
        return None
    mask = bytes(buffer[at : at + 4]) * (length // 4 + 1)
    masked = bytes(buffer[at + 4 : at + 4 + length])
    payload = (int.from_bytes(masked, "big") ^ int.from_bytes(mask[:length], "big")).to_bytes(length, "big")
    del buffer[: at + 4 + length]
    return first & 0x0F, payload


class TopicWatcher:
    """The watched topics' committed next ids, read from the last volume first (as reads are)."""

    def __init__(self, volumes: list[str], topics: list[str]):
        """``topics`` are normalised names. Raises TopicNotFound if one is on no volume."""
        self._dirs = {topic: [TopicDir(volume, topic) for volume in reversed(volumes)] for topic in topics}
        self._seen: dict[str, int | None] = {}
        for topic in self._dirs:
            self._seen[topic] = self._next_id(topic)
            if self._seen[topic] is None:
                raise TopicNotFound("topic does not exist")

    def _next_id(self, topic: str) -> int | None:
        """None if the topic is on no volume; a commit damaged everywhere counts as unchanged."""
        damaged = False
        for topic_dir in self._dirs[topic]:
            try:
                commit = topic_dir.read_commit()
            except Corruption:
                damaged = True
                continue
            if commit is not None:
                return commit.next_id
        return self._seen.get(topic) if damaged else None

    def poll(self) -> list[str]:
        """The topics whose next id grew since the last poll (a re-created topic starts over)."""
        written = []
        for topic, before in self._seen.items():
            now = self._next_id(topic)
            if now is not None and before is not None and now > before:
                written.append(topic)
            self._seen[topic] = now
        return written

    @property
    def all_gone(self) -> bool:
        return all(next_id is None for next_id in self._seen.values())


def serve_watch(
    sock: socket.socket,
    accept: str,
    watcher: TopicWatcher,
    poll_seconds: float = POLL_SECONDS,
    ping_seconds: float = PING_SECONDS,
) -> bool:
    """Answer 101 on ``sock`` and notify the client of writes until it leaves or every topic
    is gone; the socket is shut down on return. False, with ``sock`` untouched, if the worker
    has no thread to spare for another watch."""
    if not _take_thread():
        return False
    sock.settimeout(SEND_TIMEOUT_SECONDS)
    try:
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode("ascii") + b"\r\n\r\n"
        )
        _WatchLoop(sock, watcher, poll_seconds, ping_seconds).run()
    except OSError as exc:  # the client went away or stopped reading: nothing left to tell it
        logger.debug("topic watch ended: %s", exc)
    finally:
        _give_thread_back()  # before the shutdown: a client that saw the end may watch again at once
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
    return True


class _WatchLoop:
    def __init__(self, sock: socket.socket, watcher: TopicWatcher, poll_seconds: float, ping_seconds: float):
        self.sock = sock
        self.watcher = watcher
        self.poll_seconds = poll_seconds
        self.ping_seconds = ping_seconds
        self.received = bytearray()
        self.last_heard = time.monotonic()  # when the client last sent anything
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)

    def run(self) -> None:
        try:
            self._watch()
        finally:
            self.selector.close()

    def _watch(self) -> None:
        next_ping = time.monotonic() + self.ping_seconds
        while True:
            if self.selector.select(self.poll_seconds) and not self._handle_client_frames():
                return
            for topic in self.watcher.poll():
                self.sock.sendall(frame(OP_TEXT, topic.encode("utf-8")))
            if self.watcher.all_gone or _worker_stopping():
                self._close(CLOSE_GOING_AWAY)
                return
            if time.monotonic() - self.last_heard > 2 * self.ping_seconds:
                logger.debug("topic watch client answered no ping: dropped")
                return
            if time.monotonic() >= next_ping:
                self.sock.sendall(frame(OP_PING))
                next_ping = time.monotonic() + self.ping_seconds

    def _receive(self) -> list[tuple[int, bytes]] | None:
        """Read once: the complete frames received, or None once the client disconnected.
        Raises ProtocolError."""
        data = self.sock.recv(65536)
        if not data:
            return None
        self.last_heard = time.monotonic()
        self.received += data
        frames = []
        while (parsed := parse_frame(self.received)) is not None:
            frames.append(parsed)
        return frames

    def _handle_client_frames(self) -> bool:
        """Answer what the client sent; False once the connection is over."""
        try:
            frames = self._receive()
        except ProtocolError as exc:
            self._close(exc.code)
            return False
        if frames is None:
            return False
        for opcode, payload in frames:
            if opcode == OP_CLOSE:
                self.sock.sendall(frame(OP_CLOSE, payload[:2]))  # echo the client's code
                return False
            if opcode == OP_PING:
                self.sock.sendall(frame(OP_PONG, payload))
        return True

    def _close(self, code: int) -> None:
        """Send a close frame and give the client a moment to answer with its own."""
        self.sock.sendall(close_frame(code))
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0 and self.selector.select(left):
            try:
                frames = self._receive()
            except ProtocolError:
                return
            if frames is None or any(opcode == OP_CLOSE for opcode, _ in frames):
                return
