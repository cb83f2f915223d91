"""haraqa's HTTP API as thin DRF views: parse headers, call the store, shape the response."""

from __future__ import annotations

import functools
import json
import socket
import time
from datetime import datetime
from urllib.parse import quote

from django.http import FileResponse, HttpResponse, JsonResponse
from django.utils.html import escape
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from queues import metrics
from queues.conf import conf, get_store
from queues.storage import InvalidTopic, MessageRange, TopicExists, normalize_topic
from queues.storage.watching import TopicWatcher

from . import corking, deadlines, headers, schema, watch, websocket
from .errors import HaraqaError, error_response, headers_only_error, no_content, sized

INVALID_JSON = "invalid body: invalid json entry"


class HaraqaApiView(APIView):
    """DRF's APIView without the per-request steps haraqa's API has no use for.

    The API has no users, permissions or throttles (haraqa has none), no versions or format
    suffixes, and its handlers read bodies raw and answer with Django responses. DRF's
    ``initial`` (content negotiation, then the authentication, permission and throttle checks)
    would find nothing to do at a cost of 6-7% of the instructions of a produce or a consume
    (callgrind), so it runs only if checks are configured. Errors still go through DRF's
    exception handler, and answers keep DRF's ``Allow`` and ``Vary`` headers, worked out once
    per class.
    """

    parser_classes = ()  # bodies are read raw; DRF would build its parsers for every request
    _has_checks = True
    _default_headers: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._has_checks = bool(
            cls.authentication_classes or cls.throttle_classes
            or any(permission is not AllowAny for permission in cls.permission_classes)
        )
        handled = [m for m in cls.http_method_names if hasattr(cls, m) or m == "head" and hasattr(cls, "get")]
        methods = ", ".join(m.upper() for m in handled)  # View.setup makes HEAD a GET
        cls._default_headers = {"Allow": methods, "Vary": "Accept"} if len(cls.renderer_classes) > 1 else {"Allow": methods}

    def initial(self, request, *args, **kwargs):
        if self._has_checks:
            super().initial(request, *args, **kwargs)

    @property
    def default_response_headers(self) -> dict[str, str]:
        return dict(self._default_headers)  # a copy: DRF pops Vary from it


class TopicListApi(HaraqaApiView):
    """GET /topics: names as JSON, an HTML page of links or CSV, by Accept."""

    @schema.list_topics
    def get(self, request):
        query = request.GET  # the filters haraqa's Go client sends, all of them applying
        topics = get_store().list_topics(query.get("regex") or None, query.get("prefix", ""), query.get("suffix", ""))
        accept = headers.header(request, "Accept", "").lower()
        if "application/json" in accept:
            return sized(JsonResponse({"topics": topics}))
        if "text/html" in accept:
            links = "".join(f'<li><a href="/topics/{escape(quote(t))}">{escape(t)}</a></li>' for t in topics)
            return sized(HttpResponse(f"<!doctype html><title>topics</title><ul>{links}</ul>", content_type="text/html"))
        return sized(HttpResponse(",".join(topics), content_type="text/csv"))

    def options(self, request):
        return _preflight(request)


class TopicApi(HaraqaApiView):
    """One topic: create, delete, produce, consume, truncate, CORS preflight."""

    @schema.create_topic
    def put(self, request, topic: str):
        # No body, as haraqa answers: its Go client never closes a create's answer, and one with a
        # body would pin the connection (thousands of "ensure the topic exists" calls stalled the server).
        try:
            get_store().create_topic(topic)
        except TopicExists as exc:
            return headers_only_error(str(exc), 412)
        return sized(HttpResponse(status=201, content_type="text/plain"))

    @schema.delete_topic
    def delete(self, request, topic: str):
        get_store().delete_topic(topic)
        return no_content()

    @schema.produce
    def post(self, request, topic: str):
        http = request._request  # Django's request: DRF's proxies every attribute lookup, which costs more
        sizes = headers.parse_sizes(headers.header(http, "X-Sizes"))
        chunked = headers.is_chunked(http)
        length = None if chunked else headers.content_length(http)
        get_store().produce(topic, sizes, deadlines.client_body(http, chunked), length)
        metrics.record_produce(len(sizes), sum(sizes) if length is None else length)  # the store checked they agree
        return no_content()

    @schema.consume
    def get(self, request, topic: str):
        http = request._request  # as in post
        group = headers.name_header(http, "X-Consumer-Group")
        start = headers.message_id(http, has_group=bool(group))
        limit = headers.message_limit(http, conf.limit)
        store = get_store()
        if group:
            delivered = http.method != "HEAD"  # a HEAD answer carries no messages: the group keeps them
            messages = store.consume_group(topic, group, start, limit, advance=delivered)
        else:
            messages = store.consume(topic, start, limit)
        metrics.record_consume(messages.sizes, messages.byte_count, store.degraded_reads)
        deadlines.limit_response_waits(http, conf.client_timeout)
        return _messages_response(messages, headers.header(http, "Accept", ""), http.META.get("gunicorn.socket"))

    @schema.modify_topic
    def patch(self, request, topic: str):
        http = request._request  # as in post
        before_id, before = _parse_modify(deadlines.whole_body(http, headers.is_chunked(http)))
        if not before_id and before is None:
            return no_content()
        offsets = get_store().truncate(topic, before_id=before_id or None, before=before)
        return sized(JsonResponse({"minOffset": offsets.min_offset, "maxOffset": offsets.max_offset}))

    def options(self, request, topic: str):
        return _preflight(request)


class TopicWatchApi(HaraqaApiView):
    """GET /ws/topics (X-Topics) and /ws/topics/{topic}: a websocket told of every write."""

    @extend_schema(exclude=True)  # a websocket, not an OpenAPI operation
    def get(self, request, topic: str | None = None):
        listed = headers.name_header(request._request, "X-Topics") or ""  # one value per topic, joined by commas
        names = [name.strip() for name in listed.split(",") if name.strip()]
        if topic is not None:
            names.append(topic)
        if not names:
            raise InvalidTopic("invalid topic")
        watcher = TopicWatcher(get_store().volumes, sorted({normalize_topic(name) for name in names}))
        accept = websocket.handshake_accept(request.headers) if request.method == "GET" else None
        if accept is None:
            response = error_response("invalid websocket", 400)
            response["Sec-WebSocket-Version"] = "13"
            return response
        sock = request.META.get("gunicorn.socket")
        if sock is None:
            return error_response("websocket needs the gunicorn server (manage.py serve)", 501)
        if not watch.process_hub(metrics.record_watches).adopt(sock, accept, watcher):
            return error_response(watch.TOO_MANY, 503)
        # gunicorn's attempt to send this fails quietly (EPIPE): the hub took the connection away
        return HttpResponse(status=101)


def _preflight(request) -> HttpResponse:
    """haraqa's CORS preflight: echo the requested headers and method as allowed (the allowed
    origin comes from queues.middleware, with --cors)."""
    response = sized(HttpResponse(status=200))
    del response["Content-Type"]  # no body
    for asked, allowed in (("Headers", "Headers"), ("Method", "Methods")):
        value = headers.header(request, f"Access-Control-Request-{asked}")
        if value:
            response[f"Access-Control-Allow-{allowed}"] = value
    return response


class RangeResponse(FileResponse):
    """A consume answer: the view sets its type and length, so Django's guesses from the file
    (length by seeking, type and ``Content-Disposition`` by name) have nothing to find."""

    def set_headers(self, filelike) -> None:
        pass


def _messages_response(messages: MessageRange, accept: str, sock: socket.socket | None) -> RangeResponse:
    first_accept = accept.split(",")[0].split(";")[0].strip().lower()
    text = first_accept in ("text/plain", "text/html")
    range_file = corking.corked(messages.open(), messages.byte_count, sock)  # small: with the headers in one packet
    response = RangeResponse(range_file, content_type="text/plain" if text else "application/octet-stream")
    response.block_size = 1 << 20  # servers without sendfile read the file in these chunks
    response["Content-Length"] = str(messages.byte_count)
    response["X-Sizes"] = headers.format_sizes(messages.sizes)
    response["X-Start-Time"] = _ansic_time(messages.start_time_ns // 1_000_000_000)
    response["X-End-Time"] = _ansic_time(messages.end_time_ns // 1_000_000_000)
    return response


@functools.lru_cache(maxsize=1024)
def _ansic_time(seconds: int) -> str:
    """Go's time.ANSIC layout in UTC, ``Mon Jan _2 15:04:05 2006`` (the day padded with a
    space, which strftime cannot do portably); messages of a batch, and batches of a second,
    share one."""
    utc = time.gmtime(seconds)
    return f"{time.strftime('%a %b', utc)} {utc.tm_mday:2d} {time.strftime('%H:%M:%S %Y', utc)}"


def _parse_modify(body: bytes) -> tuple[int, datetime | None]:
    """``{"truncate": ID, "before": "RFC3339"}`` -> (ID or 0, time or None), read as Go's
    decoder reads it into haraqa's request: field names in any case, other fields ignored,
    ``null`` an empty request, an empty body an error."""
    if not body:
        raise HaraqaError(INVALID_JSON)
    try:
        entry = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HaraqaError(INVALID_JSON) from None
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise HaraqaError(INVALID_JSON)
    entry = {key.lower(): value for key, value in entry.items()}
    truncate = entry.get("truncate", 0)
    if isinstance(truncate, bool) or not isinstance(truncate, int) or truncate not in headers.INT64:
        raise HaraqaError(INVALID_JSON)
    before = entry.get("before")
    if before is None or before == "0001-01-01T00:00:00Z":  # Go's zero time: not set
        return truncate, None
    if not isinstance(before, str):
        raise HaraqaError(INVALID_JSON)
    try:
        parsed = datetime.fromisoformat(before.replace("Z", "+00:00"))
    except ValueError:
        raise HaraqaError(INVALID_JSON) from None
    if parsed.tzinfo is None:
        raise HaraqaError(INVALID_JSON)
    return truncate, parsed
