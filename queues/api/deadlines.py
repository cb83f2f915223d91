"""Deadlines on the client's connection: a stalled producer or consumer must not hold a topic
lock or a gunicorn thread for as long as its connection lives."""

from __future__ import annotations

import platform
import re
import socket
import struct

from django.conf import settings
from django.http import HttpRequest
from gunicorn.http.errors import ParseException

from queues.storage import InvalidBody

from .errors import ERROR_DETAIL_CHARS

TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds


def client_body(request: HttpRequest, chunked: bool) -> ClientBody:
    """The request body as a stream (chunked bodies straight from the WSGI input). Under
    ``manage.py serve`` each read waits at most the client timeout (``limit_connection_waits``):
    a batch over 4 MiB is streamed under the topic lock, which a stalled producer would
    otherwise hold for as long as its connection lives, and a smaller one would hold a thread."""
    return ClientBody(request.META["wsgi.input"] if chunked else request, request.META.get("gunicorn.socket"))


def whole_body(request: HttpRequest, chunked: bool) -> bytes:
    """The request body, read as ``ClientBody`` reads: a failed read or malformed chunks are a 400.
    Django's ``request.body`` reads ``Content-Length`` bytes, so none of a chunked body: that is
    read from the WSGI input, up to Django's limit for bodies held in memory."""
    try:
        if not chunked:
            return request.body
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = request.META["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise InvalidBody(f"invalid body: larger than {limit} bytes")
        return body
    except OSError as exc:  # Django re-raises the socket's errors as UnreadablePostError
        raise _client_failed(exc, request.META.get("gunicorn.socket")) from None
    except ParseException as exc:
        raise _malformed(exc, request.META.get("gunicorn.socket")) from None


class ClientBody:
    """A request body for the engine: a read that fails (a timeout, a reset connection, malformed
    chunks) is the client's doing, so it ends the produce with 400 ``invalid body``, not as a
    storage error."""

    __slots__ = ("_stream", "_sock")

    def __init__(self, stream, sock: socket.socket | None):
        self._stream = stream
        self._sock = sock

    def read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except OSError as exc:  # as in whole_body
            raise _client_failed(exc, self._sock) from None
        except ParseException as exc:
            raise _malformed(exc, self._sock) from None


def _client_failed(exc: OSError, sock: socket.socket | None) -> InvalidBody:
    """The 400 for a body read that failed. Nothing more is read from ``sock``: the answer still
    goes out, and gunicorn's close does not wait 2 s for the rest of the body on the loop that
    serves all of the worker's connections (measured: a request meanwhile took 2 s)."""
    if sock is not None:
        shut_down(sock, socket.SHUT_RD)
    cause = exc
    while cause.__cause__ is not None:  # Django wraps the socket's error, once or twice
        cause = cause.__cause__
    timed_out = isinstance(cause, (TimeoutError, BlockingIOError))  # a socket or a kernel receive timeout
    return InvalidBody(f"invalid body: reading it failed: {'timed out' if timed_out else cause.strerror or cause}")


def _malformed(exc: ParseException, sock: socket.socket | None) -> InvalidBody:
    """The 400 for a chunked body gunicorn cannot parse (a bad chunk size, a missing CRLF): the
    client's doing, and as with a failed read, nothing more is read from ``sock``."""
    if sock is not None:
        shut_down(sock, socket.SHUT_RD)
    return InvalidBody(f"invalid body: malformed chunked encoding: {str(exc)[:ERROR_DETAIL_CHARS]}")


def shut_down(sock: socket.socket, how: int) -> None:
    """``sock.shutdown(how)``, unless the connection is already gone."""
    try:
        sock.shutdown(how)
    except OSError:
        pass


def limit_connection_waits(sock: socket.socket | None, timeout: float | None) -> None:
    """Bound, for the life of the connection, how long it waits on its client: each blocking
    read of a request (its head, its body) waits at most ``timeout`` seconds, then fails with
    BlockingIOError; and where the kernel bounds zero-window waits (``TCP_USER_TIMEOUT``, Linux
    5.11 on), an answer the client takes none of for that long gets the connection dropped."""
    if sock is None or timeout is None:
        return
    seconds, microseconds = divmod(max(1, round(timeout * 1_000_000)), 1_000_000)  # 0 would be no limit
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.pack(seconds, microseconds))
    if KERNEL_DROPS_STALLED_READERS:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, round(timeout * 1000)))


def limit_response_waits(request: HttpRequest, timeout: float | None) -> None:
    """Under gunicorn, let this request's response wait at most ``timeout`` seconds for the
    client to take more: a consumer that stops reading a large range frees its thread.

    Where the kernel drops such a connection itself (``limit_connection_waits``), there is
    nothing to do, and the socket stays blocking, so ``sendfile`` sends a range in one call
    (consume of 1000 x 1 KiB: 7% more req/s, 9% less CPU than with a socket timeout, which
    makes Python poll before every send). Elsewhere each write gets a socket timeout; gunicorn
    sets the socket's mode again before the connection's next request."""
    sock = request.META.get("gunicorn.socket")
    if sock is not None and timeout is not None and not KERNEL_DROPS_STALLED_READERS:
        sock.settimeout(timeout)


def _kernel_drops_stalled_readers() -> bool:
    """Whether TCP_USER_TIMEOUT also ends waits on a client's zero window (Linux >= 5.11)."""
    if not hasattr(socket, "TCP_USER_TIMEOUT") or platform.system() != "Linux":
        return False
    release = re.match(r"(\d+)\.(\d+)", platform.release())
    return release is not None and (int(release[1]), int(release[2])) >= (5, 11)


KERNEL_DROPS_STALLED_READERS = _kernel_drops_stalled_readers()
