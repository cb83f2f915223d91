"""The single place where errors become haraqa responses: status + ``X-Errors`` + text body."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponse
from gunicorn import util
from rest_framework import exceptions

from queues import metrics
from queues.storage import errors as storage

logger = logging.getLogger(__name__)
INTERNAL = "internal server error"
NOT_FOUND = "not found"
BAD_REQUEST = "bad request"
ERROR_DETAIL_CHARS = 200  # of gunicorn's description of a bad request, which may quote the request
_GUNICORN_WRAPPING = re.compile(r"Invalid (?:Request Line|Method|HTTP Version) '(.*)'", re.S)

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: list[tuple[type[storage.StorageError], int]] = [
    (storage.TopicNotFound, 412),
    (storage.TopicExists, 412),
    (storage.NoContent, 204),
    (storage.BatchTooLarge, 413),
    (storage.MessageIdTruncated, 416),
    (storage.InvalidInput, 400),
    (storage.VolumesOutOfSync, 503),
    (storage.Corruption, 500),
]


class HaraqaError(Exception):
    """An error raised by the API layer itself (bad headers, bad JSON)."""

    def __init__(self, text: str, status: int = 400):
        super().__init__(text)
        self.text = text
        self.status = status


def no_content() -> HttpResponse:
    """A 204: no body, so no ``Content-Type`` (Django would add text/html; haraqa sends none)."""
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response


def sized(response: HttpResponse) -> HttpResponse:
    """``response`` with its ``Content-Length``, as haraqa's answers carry it; without one,
    gunicorn sends even a few bytes chunked."""
    response["Content-Length"] = str(len(response.content))
    return response


def error_response(text: str, status: int) -> HttpResponse:
    response = no_content() if status == 204 else sized(HttpResponse(text, status=status, content_type="text/plain"))
    response["X-Errors"] = text
    return response


def headers_only_error(text: str, status: int) -> HttpResponse:
    """An error with its text in ``X-Errors`` only, for clients that never read the answer."""
    response = sized(HttpResponse(status=status, content_type="text/plain"))
    response["X-Errors"] = text
    return response


def haraqa_exception_handler(exc: Exception, context: dict) -> HttpResponse:
    """DRF exception handler: every error leaves with haraqa's header and codes."""
    if isinstance(exc, HaraqaError):
        return error_response(exc.text, exc.status)
    if isinstance(exc, storage.StorageError):
        for error_class, status in STATUS_BY_ERROR:
            if isinstance(exc, error_class):
                return error_response(str(exc), status)
        logger.error("storage failure: %s", exc)
        return error_response("internal storage error", 500)
    if isinstance(exc, exceptions.APIException):
        return error_response(str(exc.detail), exc.status_code)
    if isinstance(exc, Http404):  # Django's, which DRF's own handler turns into its 404
        return error_response(NOT_FOUND, 404)
    if isinstance(exc, SuspiciousOperation):  # as Django answers it elsewhere (handler400)
        return error_response(BAD_REQUEST, 400)
    if isinstance(exc, OSError):
        logger.error("I/O failure: %s", exc.strerror)
        return error_response(f"storage i/o error: {exc.strerror or 'unknown'}", 500)
    logger.error("unexpected failure", exc_info=exc)
    return error_response(INTERNAL, 500)  # with X-Errors: a Go client reads a 500 without it as success


# Django's answers outside the API views (an unknown path, a failing middleware), as haraqa's.


def not_found(request, exception) -> HttpResponse:
    return error_response(NOT_FOUND, 404)


def bad_request(request, exception) -> HttpResponse:
    return error_response(BAD_REQUEST, 400)


def server_error(request) -> HttpResponse:
    return error_response(INTERNAL, 500)


def _unwrapped(status: int, detail: str) -> str:
    """gunicorn's description without its wrapping (``Invalid Request Line '...'`` around the
    parser's own words); none for 431, whose description names gunicorn's internal limit."""
    if status == 431:
        return ""
    wrapped = _GUNICORN_WRAPPING.fullmatch(detail)
    return wrapped[1] if wrapped else detail


def write_protocol_error(sock, status: int, reason: str, detail: str) -> None:
    """gunicorn's answer to a request it cannot parse (a malformed line or header, a head too
    large), in place of its HTML page: haraqa's ``X-Errors`` and a text body, so clients see an
    error (haraqa's Go client takes any answer without ``X-Errors`` for success)."""
    text = INTERNAL if status == 500 else f"invalid request: {_unwrapped(status, detail) or reason.lower()}"
    text = "".join(c if " " <= c <= "~" else "?" for c in text[:ERROR_DETAIL_CHARS])  # it may quote the request
    body = text.encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        f"X-Errors: {text}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    metrics.record_refused_request(status)
    util.write_nonblock(sock, head.encode("ascii") + body)
