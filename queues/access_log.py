"""gunicorn logging: one line per request for the access log (client, time, method, path, status,
bytes, duration), and one line for a consumer cut off by the client timeout.

The access line is cheaper than gunicorn's configurable format, which builds a dict of every
header and environ variable for each request.
"""

from __future__ import annotations

import sys

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def exception(self, msg, *args, **kwargs) -> None:
        """One line, not a traceback, for a consumer cut off by ``--client-timeout``."""
        if isinstance(sys.exc_info()[1], TimeoutError):
            self.warning("%s The client took nothing for the client timeout; connection closed.", msg)
            return
        super().exception(msg, *args, **kwargs)

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        path = environ.get("RAW_URI") or environ.get("PATH_INFO", "")  # as sent: still %-encoded
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
