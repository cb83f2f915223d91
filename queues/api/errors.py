"""The single place where errors become haraqa responses: status + ``X-Errors`` + text body."""

from __future__ import annotations

import logging

from django.http import HttpResponse
from rest_framework import exceptions

from queues.storage import errors as storage

logger = logging.getLogger(__name__)

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


def error_response(text: str, status: int) -> HttpResponse:
    response = HttpResponse(b"" if status == 204 else text, status=status, content_type="text/plain")
    response["X-Errors"] = text
    return response


def haraqa_exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
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
    if isinstance(exc, OSError):
        logger.error("I/O failure: %s", exc.strerror)
        return error_response(f"storage i/o error: {exc.strerror or 'unknown'}", 500)
    return None
