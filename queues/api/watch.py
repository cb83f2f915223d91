"""haraqa's topic watch (``GET /ws/topics``): the websocket connections and the hub serving them.

WSGI has no websockets. The view validates the request and builds a ``TopicWatcher``;
``WatchHub.adopt`` then takes the client connection away from gunicorn and hands it to
its worker process's hub: one thread that serves every watch of the process through a
selector. The hub answers ``101 Switching Protocols``, reads the watched topics' commit
records every ``POLL_SECONDS`` (each topic once, however many watch it) and sends a text
frame with the topic name for every change, answers pings and close frames, pings every
client every ``PING_SECONDS`` (a client silent for two of them is dropped, as haraqa's
server did) and closes with 1001 once every watched topic is deleted or the gunicorn
worker stops. A watch holds a descriptor, not a worker thread.

Taking the connection (``take_over``): the hub keeps a duplicate of gunicorn's descriptor,
and gunicorn's descriptor number is pointed at a socket pair whose other end is closed.
gunicorn's own answer to the request then fails with EPIPE, which it logs at debug level
only, and its close leaves the client connection alone. The frames are ``websocket``'s;
what is read of the topics is ``queues.storage.watching``'s. Standard library only; no Django.
"""

from __future__ import annotations

import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable

from queues.storage.watching import DAMAGED, CommitRecord, TopicWatcher

from .websocket import (
    CLOSE_GOING_AWAY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ProtocolError,
    close_frame,
    frame,
    parse_frame,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often the commit records are read: an fstat + pread per watched topic
POLL_SHARE = 0.1  # with many topics, polls space out so that reading them takes at most this share of a core
PING_SECONDS = 60.0  # as haraqa's server: a client silent for 120 s is dropped
CHORES_SECONDS = 0.25  # how often every watch is checked for pings, silence, stalls and ended closes
SEND_TIMEOUT_SECONDS = 10.0  # a client that reads nothing for this long is dropped
CLOSE_WAIT_SECONDS = 1.0  # after our close frame, how long the client's close reply is awaited
MAX_UNSENT_BYTES = 1 << 20  # a client further behind than this is dropped
RECEIVE_BYTES = 1 << 16
KEPT_RECORDS = 1024  # commit files a hub keeps open; the topics watched beyond are read by path
TOO_MANY = "too many topic watches: this worker holds as many as its descriptor limit allows"


_gunicorn_worker = None  # this process's gunicorn worker, once follow_worker has run
_hub = None  # this process's WatchHub, made by the first watch
_hub_guard = threading.Lock()


def follow_worker(worker) -> None:
    """gunicorn ``post_worker_init`` hook: open watches end with 1001 once ``worker`` stops."""
    global _gunicorn_worker
    _gunicorn_worker = worker


def close_watches(server, worker) -> None:
    """gunicorn ``worker_exit`` hook: close this worker's watches with 1001 before it exits
    (the hub's thread would otherwise die with the process, dropping them without a word)."""
    if _hub is not None and _hub.pid == os.getpid():
        _hub.stop(timeout=CLOSE_WAIT_SECONDS + 1)


def _worker_stopping() -> bool:
    return _gunicorn_worker is not None and not _gunicorn_worker.alive


def process_hub(on_count: Callable[[int], None] | None = None) -> WatchHub:
    """This process's hub (a forked child makes its own); ``on_count`` is told its number of
    watches whenever it changes."""
    global _hub
    with _hub_guard:
        if _hub is None or _hub.pid != os.getpid():
            _hub = WatchHub(on_count=on_count)
        return _hub


def take_over(sock: socket.socket) -> socket.socket:
    """A non-blocking socket on ``sock``'s connection; ``sock`` itself is left on a socket
    pair whose other end is closed, so what its owner sends or closes there misses the client."""
    connection = socket.socket(fileno=os.dup(sock.fileno()))
    dead_end, closed_end = socket.socketpair()
    with dead_end, closed_end:
        os.dup2(dead_end.fileno(), sock.fileno(), inheritable=False)
    connection.setblocking(False)
    return connection


class _Watch:
    """One client connection of the hub, and what the hub knows of it."""

    def __init__(self, sock: socket.socket, watcher: TopicWatcher, accept: str, ping_seconds: float):
        now = time.monotonic()
        self.sock = sock
        self.dirs = watcher.dirs
        self.next_ids = dict(watcher.next_ids)  # as last seen by this client
        self.open = True
        self.received = bytearray()
        self.unsent = bytearray(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode("ascii") + b"\r\n\r\n"
        )
        self.unsent_since = now  # when the client last took some of ``unsent``
        self.waiting_to_write = False  # registered for EVENT_WRITE
        self.last_heard = now  # when the client last sent anything
        self.next_ping = now + ping_seconds
        self.close_deadline: float | None = None  # we sent a close frame: until when we await the client's
        self.ending = False  # the client closed: we end once its close frame's echo is sent

    @property
    def closing(self) -> bool:
        return self.close_deadline is not None or self.ending


class WatchHub:
    """Every open watch of this process, served by one thread that the first watch starts.

    Request threads call ``adopt`` and ``stop``; everything else runs in the hub's thread.
    """

    def __init__(self, poll_seconds: float = POLL_SECONDS, ping_seconds: float = PING_SECONDS,
                 max_watches: int | None = None, on_count: Callable[[int], None] | None = None):
        self.pid = os.getpid()
        self.on_count = on_count
        self.poll_seconds = poll_seconds
        self.ping_seconds = ping_seconds
        # each watch holds a descriptor; leave the other half of the limit to files and requests
        self.max_watches = max_watches or max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
        self._guard = threading.Lock()  # for the four below, which request threads use too
        self._arrivals: list[_Watch] = []
        self._count = 0  # adopted and not dropped yet
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_receiver, selectors.EVENT_READ)
        self._watches: set[_Watch] = set()
        self._by_topic: dict[str, set[_Watch]] = {}
        self._records: dict[str, CommitRecord] = {}
        self._last_read: dict[str, int | None] = {}  # each topic's next id at the last poll
        self._unsettled: set[str] = set()  # topics a new watch saw at another next id than the last poll
        self._said_goodbye = False

    @property
    def count(self) -> int:
        return self._count

    def adopt(self, sock: socket.socket, accept: str, watcher: TopicWatcher) -> bool:
        """Take ``sock``'s connection (see ``take_over``), answer 101 on it and watch
        ``watcher``'s topics. False, with ``sock`` untouched, if the hub is full or stopping."""
        with self._guard:
            if self._count >= self.max_watches or self._stopping:
                return False
            self._arrivals.append(_Watch(take_over(sock), watcher, accept, self.ping_seconds))
            self._count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="topic-watches", daemon=True)
                self._thread.start()
            self._tell_count()
        self._wake()
        return True

    def stop(self, timeout: float) -> None:
        """Close every watch with 1001; wait up to ``timeout`` for them to end."""
        with self._guard:
            self._stopping = True
            running = self._thread
        self._wake()
        if running is not None:
            running.join(timeout)

    def _wake(self) -> None:
        try:
            self._wake_sender.send(b"\0")
        except OSError:
            pass  # woken plenty already (BlockingIOError), or stopped

    def _run(self) -> None:
        next_poll = next_chores = time.monotonic()
        try:
            while not (self._stopping and self._count == 0):
                timeout = max(0.0, min(next_poll, next_chores) - time.monotonic()) if self._watches else None
                for key, events in self._selector.select(timeout):
                    if key.data is None:
                        self._take_arrivals()
                    else:
                        self._serve(key.data, events)
                if (self._stopping or _worker_stopping()) and not self._said_goodbye:
                    self._said_goodbye = True
                    for watch in list(self._watches):
                        self._begin_close(watch, CLOSE_GOING_AWAY)
                now = time.monotonic()
                if now >= next_poll:
                    self._poll_topics()
                    next_poll = now + max(self.poll_seconds, (time.monotonic() - now) / POLL_SHARE)
                if now >= next_chores:
                    self._do_chores(now)
                    next_chores = now + min(CHORES_SECONDS, self.ping_seconds / 4)
        except Exception:
            logger.exception("topic watches failed: their connections are closed")
        finally:
            with self._guard:
                self._thread = None
                arrivals, self._arrivals = self._arrivals, []
            for watch in [*self._watches, *arrivals]:
                self._drop(watch, "the hub ended")
            if self._stopping:
                for resource_ in (self._selector, self._wake_receiver, self._wake_sender):
                    resource_.close()

    def _take_arrivals(self) -> None:
        try:
            while self._wake_receiver.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._guard:
            arrivals, self._arrivals = self._arrivals, []
        for watch in arrivals:
            self._watches.add(watch)
            self._selector.register(watch.sock, selectors.EVENT_READ, watch)
            for topic, next_id in watch.next_ids.items():
                if topic not in self._by_topic:
                    self._by_topic[topic] = set()
                    self._records[topic] = CommitRecord(watch.dirs[topic])
                    self._last_read[topic] = next_id
                elif self._last_read[topic] != next_id:
                    self._unsettled.add(topic)
                self._by_topic[topic].add(watch)
            self._flush(watch)  # the 101 answer
            if self._said_goodbye:
                self._begin_close(watch, CLOSE_GOING_AWAY)

    def _serve(self, watch: _Watch, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(watch)
        if watch.open and events & selectors.EVENT_READ:
            self._receive(watch)

    def _poll_topics(self) -> None:
        """Read each watched topic's commit once; tell its watches of a change."""
        kept = sum(record.kept is not None for record in self._records.values())
        for topic, watches in list(self._by_topic.items()):
            record = self._records[topic]
            if not record.may_have_changed() and topic not in self._unsettled:
                continue
            next_id = record.read(keep=kept < KEPT_RECORDS)
            kept += record.kept is not None
            if next_id == DAMAGED or (next_id == self._last_read[topic] and topic not in self._unsettled):
                continue
            self._last_read[topic] = next_id
            for watch in list(watches):
                self._topic_read(watch, topic, next_id)
        self._unsettled.clear()

    def _topic_read(self, watch: _Watch, topic: str, next_id: int | None) -> None:
        before, watch.next_ids[topic] = watch.next_ids[topic], next_id
        if watch.closing:
            return
        if next_id is not None and before is not None and next_id > before:
            self._send(watch, frame(OP_TEXT, topic.encode("utf-8")))
        elif next_id is None and all(seen is None for seen in watch.next_ids.values()):
            self._begin_close(watch, CLOSE_GOING_AWAY)  # every watched topic is deleted

    def _do_chores(self, now: float) -> None:
        for watch in list(self._watches):
            if watch.close_deadline is not None and now >= watch.close_deadline:
                self._drop(watch, "no close frame came back")
            elif watch.unsent and now - watch.unsent_since > SEND_TIMEOUT_SECONDS:
                self._drop(watch, "the client reads nothing")
            elif now - watch.last_heard > 2 * self.ping_seconds:
                self._drop(watch, "the client answered no ping")
            elif now >= watch.next_ping and not watch.closing:
                watch.next_ping = now + self.ping_seconds
                self._send(watch, frame(OP_PING))

    def _receive(self, watch: _Watch) -> None:
        try:
            data = watch.sock.recv(RECEIVE_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(watch, f"receiving failed: {exc}")
            return
        if not data:
            self._drop(watch, "the client left")
            return
        watch.last_heard = time.monotonic()
        watch.received += data
        try:
            while watch.open and (parsed := parse_frame(watch.received)) is not None:
                self._answer(watch, *parsed)
        except ProtocolError as exc:
            if watch.closing:
                self._drop(watch, "a protocol error while closing")
            else:
                self._begin_close(watch, exc.code)

    def _answer(self, watch: _Watch, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE:
            if watch.close_deadline is not None:  # the answer to ours
                self._drop(watch, "closed")
            elif not watch.ending:
                watch.ending = True
                self._send(watch, frame(OP_CLOSE, payload[:2]))  # echo the client's code
        elif opcode == OP_PING and not watch.closing:
            self._send(watch, frame(OP_PONG, payload))

    def _begin_close(self, watch: _Watch, code: int) -> None:
        """Send a close frame and give the client a moment to answer with its own."""
        if not watch.closing:
            watch.close_deadline = time.monotonic() + CLOSE_WAIT_SECONDS
            self._send(watch, close_frame(code))

    def _send(self, watch: _Watch, data: bytes) -> None:
        if len(watch.unsent) + len(data) > MAX_UNSENT_BYTES:
            self._drop(watch, "the client reads nothing")
            return
        if not watch.unsent:
            watch.unsent_since = time.monotonic()
        watch.unsent += data
        if not watch.waiting_to_write:
            self._flush(watch)

    def _flush(self, watch: _Watch) -> None:
        try:
            sent = watch.sock.send(watch.unsent)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._drop(watch, f"sending failed: {exc}")
            return
        if sent:
            del watch.unsent[:sent]
            watch.unsent_since = time.monotonic()
        if bool(watch.unsent) != watch.waiting_to_write:
            watch.waiting_to_write = bool(watch.unsent)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if watch.unsent else 0)
            self._selector.modify(watch.sock, events, watch)
        if not watch.unsent and watch.ending:
            self._drop(watch, "closed by the client")

    def _drop(self, watch: _Watch, reason: str) -> None:
        if not watch.open:
            return
        watch.open = False
        logger.debug("topic watch ended: %s", reason)
        if watch in self._watches:
            self._selector.unregister(watch.sock)
        watch.sock.close()
        self._watches.discard(watch)
        for topic in watch.next_ids:
            watches = self._by_topic.get(topic)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    self._records.pop(topic).close()
                    del self._by_topic[topic], self._last_read[topic]
                    self._unsettled.discard(topic)
        with self._guard:
            self._count -= 1
            self._tell_count()

    def _tell_count(self) -> None:
        """Under ``_guard``, so counts are told in the order they happened."""
        if self.on_count is not None:
            self.on_count(self._count)
