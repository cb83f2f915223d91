"""gunicorn logging: one line per request for the access log (client, time, method, path, status,
bytes, duration), and one line for a consumer cut off by the client timeout.

The access line is cheaper than gunicorn's configurable format, which builds a dict of every
header and environ variable for each request.
"""

from __future__ import annotations

import socket
import sys

from gunicorn.glogging import Logger

from queues.conf import conf


CUT_OFF = "The client took nothing for the client timeout; connection closed."
STALLED = "The client sent nothing for the client timeout in the middle of a request; connection closed."
TCP_CLOSE = 7  # the state (tcpi_state) of a connection the kernel has ended


LISTENING = "Listening at: %s (%s)"  # gunicorn's master, once it has its listening sockets


class AccessLogger(Logger):
    def info(self, msg, *args, **kwargs) -> None:
        """gunicorn's master names the addresses of its own sockets; here each worker opens one
        (``reuse_port``), so name the configured addresses instead of none."""
        if msg == LISTENING and args and not args[0]:
            args = (",".join(f"http://{address}" for address in self.cfg.bind) + ", a socket per worker", *args[1:])
        super().info(msg, *args, **kwargs)

    def exception(self, msg, *args, **kwargs) -> None:
        """One line, not a traceback, for a client cut off by a deadline (``queues.api.deadlines``):
        a consumer by a socket timeout, a request head by the kernel's receive timeout."""
        error = sys.exc_info()[1]
        if isinstance(error, TimeoutError):
            self.warning("%s %s", msg, CUT_OFF)
        elif isinstance(error, BlockingIOError):
            self.warning("%s %s", msg, STALLED)
        else:
            super().exception(msg, *args, **kwargs)

    def access(self, resp, req, environ, request_time) -> None:
        path = environ.get("RAW_URI") or environ.get("PATH_INFO", "")  # as sent: still %-encoded
        timeout = conf.client_timeout
        if timeout is not None and request_time.total_seconds() >= timeout and _ended_by_kernel(environ):
            self.warning("%s %s: %s", environ.get("REQUEST_METHOD"), path, CUT_OFF)  # TCP_USER_TIMEOUT did it
        if not self.access_log_enabled:
            return
        # a body sent with sendfile is not counted in resp.sent
        sent = resp.sent or resp.response_length or 0
        self.access_log.info(
            "%s %s %s %s %s %d %.1fms",
            environ.get("REMOTE_ADDR", "-"),
            self.now(),
            environ.get("REQUEST_METHOD"),
            path,
            str(resp.status).split(None, 1)[0],
            sent,
            request_time.total_seconds() * 1000,
        )


def _ended_by_kernel(environ) -> bool:
    """Whether the request's connection has been ended by the kernel (for a slow request only:
    a system call)."""
    try:
        return environ["gunicorn.socket"].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE
    except (KeyError, OSError):
        return False
