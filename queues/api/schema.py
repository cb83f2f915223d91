"""The OpenAPI description of haraqa's API (drf-spectacular): what each view's ``@extend_schema`` uses.

Every operation lists its headers, raw ``application/octet-stream`` bodies, JSON bodies and
every status it can answer, each error with haraqa's text (sent in ``X-Errors`` and as the
``text/plain`` body). ``tests/docs`` runs schemathesis against a live server to keep this true.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

HEADER = OpenApiParameter.HEADER
QUERY = OpenApiParameter.QUERY
BINARY = {"type": "string", "format": "binary"}
TEXT = "text/plain"
INTEGER = {"type": "integer", "format": "int64"}
SIZES_PATTERN = r"^[0-9]+(:[0-9]+)*$"
EXAMPLE_TOPIC = "my-topic"
ANSIC_EXAMPLE = OpenApiExample("time", value="Fri Nov  7 08:34:05 2026")


class TopicList(serializers.Serializer):
    topics = serializers.ListField(child=serializers.CharField(), help_text="topic names, sorted")


class ModifyTopic(serializers.Serializer):
    truncate = serializers.IntegerField(
        required=False,
        help_text="remove whole segments whose messages all have ids below this one; 0: nothing; "
        "negative: every segment but the one being written",
    )
    before = serializers.DateTimeField(
        required=False, help_text="remove whole segments whose messages were all written before this time (RFC 3339)"
    )


class TopicInfo(serializers.Serializer):
    minOffset = serializers.IntegerField(help_text="first message id still stored")  # noqa: N815 (wire names)
    maxOffset = serializers.IntegerField(help_text="one past the last stored id: the next id to be written")  # noqa: N815


def error(description: str, *texts: str) -> OpenApiResponse:
    """An error answer: ``text/plain`` body repeating the ``X-Errors`` text."""
    return OpenApiResponse(
        {"type": "string"},
        description=description,
        examples=[OpenApiExample(text, value=text, media_type=TEXT) for text in texts],
    )


def errors_header(*statuses: int) -> OpenApiParameter:
    return OpenApiParameter(
        "X-Errors", str, HEADER, required=True, response=list(statuses),
        description="the error text (the body repeats it, except on a 204 and on a create's 412, which have none)",
    )


TOPIC = OpenApiParameter(
    "topic", str, OpenApiParameter.PATH,
    description="Topic name, case-insensitive (stored lower-cased). Nested names (`a/b`) are topics too; "
    "empty segments, `.`/`..`, names starting with `.`, backslashes and control characters are refused.",
    examples=[OpenApiExample("a topic", value=EXAMPLE_TOPIC)],
)
INVALID_TOPIC = "invalid topic"
TOPIC_MISSING = error("the topic does not exist", "topic does not exist")
OUT_OF_SYNC = error(
    "a volume is missing the topic or disagrees with the others: run recovery",
    "topic is missing on a volume: run recovery", "volumes disagree: run recovery",
)
INTERNAL = error(
    "a volume failed or holds damaged data (the text never reveals server paths)",
    "storage i/o error: No space left on device", "internal storage error",
)

list_topics = extend_schema(
    operation_id="listTopics",
    summary="List topics",
    description="Every topic, sorted, in the form the client's `Accept` names (case-insensitive): "
    "`application/json` anywhere in it → `{\"topics\": [...]}`; else `text/html` anywhere → an HTML "
    "page of links; else comma-separated `text/csv` (also for `*/*`). Never 406.",
    tags=["topics"],
    parameters=[
        OpenApiParameter("prefix", str, QUERY, description="keep only the topics starting with this"),
        OpenApiParameter("suffix", str, QUERY, description="keep only the topics ending with this"),
        OpenApiParameter(
            "regex", {"type": "string", "format": "regex"}, QUERY,
            description="keep only the topics this regular expression matches (anywhere in the name); "
            "the syntax of Go's regexp, RE2: no lookaround or backreferences, linear-time matching",
        ),
        errors_header(400),
    ],
    responses={
        (200, "application/json"): OpenApiResponse(
            TopicList, description="topic names",
            examples=[OpenApiExample("two topics", value={"topics": ["a", "b"]}, media_type="application/json")],
        ),
        (200, "text/html"): OpenApiResponse({"type": "string"}, description="an HTML list of links to the topics"),
        (200, "text/csv"): OpenApiResponse(
            {"type": "string"}, description="comma-separated names",
            examples=[OpenApiExample("two topics (csv)", value="a,b", media_type="text/csv")],
        ),
        (400, TEXT): error("the regex does not compile", "invalid regex"),
    },
)

create_topic = extend_schema(
    operation_id="createTopic",
    summary="Create a topic",
    description="Creates the topic on every volume.",
    tags=["topics"],
    parameters=[TOPIC, errors_header(400, 412, 500)],
    request=None,
    responses={
        (201, TEXT): OpenApiResponse(description="created, with an empty body"),
        (400, TEXT): error("unsafe topic name", INVALID_TOPIC),
        (412, TEXT): OpenApiResponse(
            description="the topic exists already: `X-Errors: topic already exists`, with an empty body "
            "(haraqa's Go client never closes a create's answer, so a body would pin its connection)",
        ),
        (500, TEXT): INTERNAL,
    },
)

delete_topic = extend_schema(
    operation_id="deleteTopic",
    summary="Delete a topic",
    description="Deletes the topic and its messages on every volume (nested topics stay). "
    "Deleting a missing topic succeeds too.",
    tags=["topics"],
    parameters=[TOPIC, errors_header(400, 500)],
    request=None,
    responses={
        204: OpenApiResponse(description="deleted (or was not there)"),
        (400, TEXT): error("unsafe topic name", INVALID_TOPIC),
        (500, TEXT): INTERNAL,
    },
)

produce = extend_schema(
    operation_id="produce",
    summary="Produce messages",
    description="Appends a batch to an existing topic (create it first): the body is the messages back to "
    "back, `X-Sizes` gives each one's length. The batch is stored on every volume before the answer, and "
    "becomes visible all at once or not at all; the answer does not say which ids it got. Chunked bodies "
    "are accepted; `Content-Type` is not looked at.",
    tags=["topics"],
    parameters=[
        TOPIC,
        OpenApiParameter(
            "X-Sizes", {"type": "string", "pattern": SIZES_PATTERN}, HEADER, required=True,
            description="each message's size in bytes, `:`-separated (`0` is an empty message); "
            "they must add up to the body length. Each at most 4294967295; their sum at most the server's "
            "--max-batch-bytes (413 beyond)",
            examples=[OpenApiExample("three messages", value="5:5:3")],
        ),
        errors_header(400, 412, 413, 500, 503),
    ],
    request={"application/octet-stream": BINARY, TEXT: {"type": "string"}},
    examples=[
        OpenApiExample(
            "hello, world, abc", value="helloworldabc", request_only=True, media_type="application/octet-stream",
            description="with `X-Sizes: 5:5:3`",
        ),
        OpenApiExample(
            "hello, world, abc (typed)", value="helloworldabc", request_only=True, media_type=TEXT,
            description="with `X-Sizes: 5:5:3`",
        ),
    ],
    responses={
        204: OpenApiResponse(description="stored on every volume"),
        (400, TEXT): error(
            "bad X-Sizes, a body whose length differs from their sum, malformed chunks, or an unsafe topic name",
            "invalid header: X-Sizes", "invalid body: 12 bytes sent, X-Sizes adds up to 13",
            "invalid body: shorter than the sum of X-Sizes", "invalid body: longer than the sum of X-Sizes",
            "invalid body: malformed chunked encoding: Invalid chunk size: b'zz'", INVALID_TOPIC,
        ),
        (412, TEXT): TOPIC_MISSING,
        (413, TEXT): error("the batch is larger than the server's --max-batch-bytes", "batch larger than 1073741824 bytes"),
        (500, TEXT): INTERNAL,
        (503, TEXT): OUT_OF_SYNC,
    },
)

consume = extend_schema(
    operation_id="consume",
    summary="Consume messages",
    description="Returns up to `X-Limit` messages from id `X-Id`, back to back; `X-Sizes` gives each length. "
    "May return fewer than asked, never more: it stops at a segment end (segments hold the server's "
    "--entries messages, 5000 by default), so a short answer is not the end; go on from the next id "
    "until 204. With `X-Consumer-Group` and no `X-Id` (or a negative one) the group's next messages are "
    "sent and the group moves past them (a `HEAD` shows them without moving it); with an `X-Id` the group "
    "moves past what that sends. The body is `text/plain` when the client's first `Accept` is `text/plain` "
    "or `text/html`, otherwise `application/octet-stream`.",
    tags=["topics"],
    parameters=[
        TOPIC,
        OpenApiParameter(
            "X-Id", INTEGER, HEADER,
            description="first message id (ids start at 0); negative: the last message, or with "
            "`X-Consumer-Group` the group's next one. Required unless `id` or `X-Consumer-Group` is given.",
            examples=[OpenApiExample("from the start", value=0)],
        ),
        OpenApiParameter("id", INTEGER, QUERY, description="same as `X-Id` (a non-empty header wins)"),
        OpenApiParameter(
            "X-Limit", INTEGER, HEADER,
            description="most messages to return; missing, 0 or negative: the server's --limit (-1: no limit)",
            examples=[OpenApiExample("ten", value=10)],
        ),
        OpenApiParameter("limit", INTEGER, QUERY, description="same as `X-Limit` (a non-empty header wins)"),
        OpenApiParameter(
            "X-Consumer-Group", str, HEADER,
            description="consumer group (any name, as in haraqa): its offset advances past "
            "what it is sent and survives restarts; after a truncate removed its next message it goes on from "
            "the first message still stored",
        ),
        OpenApiParameter(
            "X-Sizes", {"type": "string", "pattern": SIZES_PATTERN}, HEADER, required=True, response=[200],
            description="size of each returned message, `:`-separated", examples=[OpenApiExample("sizes", value="5:5:3")],
        ),
        OpenApiParameter(
            "X-Start-Time", str, HEADER, response=[200], examples=[ANSIC_EXAMPLE],
            description="write time of the first message, to the second: UTC in Go's `time.ANSIC` layout",
        ),
        OpenApiParameter(
            "X-End-Time", str, HEADER, response=[200], examples=[ANSIC_EXAMPLE],
            description="write time of the last message, as `X-Start-Time`",
        ),
        errors_header(204, 400, 412, 416, 500, 503),
    ],
    request=None,
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            BINARY, description="the messages back to back",
            examples=[OpenApiExample("hello, world, abc", value="helloworldabc", media_type="application/octet-stream")],
        ),
        (200, TEXT): OpenApiResponse(BINARY, description="the same, when the client's first Accept is text/plain or text/html"),
        204: OpenApiResponse(description="`no content` (in X-Errors): nothing stored at or after that id"),
        (400, TEXT): error(
            "bad X-Id, X-Limit or topic name (any consumer group name works)",
            "invalid message id", "invalid message limit", INVALID_TOPIC,
        ),
        (412, TEXT): TOPIC_MISSING,
        (416, TEXT): error("the id was removed by a truncate", "message id truncated, first stored id is 5000"),
        (500, TEXT): error(
            "a message damaged on every volume (the text says where to go on), the group's offset unreadable on "
            "every volume (recovery resets it), or a volume failure",
            "message 7 of topic 't' is damaged on every volume and cannot be served; consume from 8",
            "unable to get consumer offset", "storage i/o error: Input/output error",
        ),
        (503, TEXT): OUT_OF_SYNC,
    },
)

modify_topic = extend_schema(
    operation_id="modifyTopic",
    summary="Truncate a topic",
    description="Removes stored messages before an id (`truncate`) and/or a time (`before`, with a time zone), "
    "whole segments at a time (the server's --entries messages each, 5000 by default); the segment being "
    "written is never removed, so a truncate inside it removes nothing and still answers the offsets. "
    "Read as haraqa reads it: other fields are ignored, and a body asking nothing (`{}`, `null`, "
    "`{\"truncate\": 0}`) answers 204 without looking at the topic. A negative `truncate` removes every "
    "segment but the one being written (haraqa's rule); field names match in any case.",
    tags=["topics"],
    parameters=[TOPIC, errors_header(400, 412, 500)],
    request={"application/json": ModifyTopic},
    examples=[
        OpenApiExample("before an id", value={"truncate": 10000}, request_only=True),
        OpenApiExample("before a time", value={"before": "2026-01-01T00:00:00Z"}, request_only=True),
    ],
    responses={
        (200, "application/json"): OpenApiResponse(
            TopicInfo, description="what is left",
            examples=[OpenApiExample("left", value={"minOffset": 10000, "maxOffset": 12345}, response_only=True)],
        ),
        204: OpenApiResponse(description="nothing asked, nothing done (the topic is not looked at)"),
        (400, TEXT): error(
            "an empty body, one that is not a JSON object, a `truncate` that is not a 64-bit integer, a `before` "
            "that is not an RFC 3339 time with a zone; or an unsafe topic name",
            "invalid body: invalid json entry", INVALID_TOPIC,
        ),
        (412, TEXT): TOPIC_MISSING,
        (500, TEXT): INTERNAL,
    },
)

PREFLIGHT = {
    "operationId": "preflight",
    "summary": "CORS preflight",
    "description": "Echoes `Access-Control-Request-Headers` as `Access-Control-Allow-Headers` and "
    "`Access-Control-Request-Method` as `Access-Control-Allow-Methods`. With CORS on (the default) every "
    "answer also carries `Access-Control-Allow-Origin: *`.",
    "tags": ["topics"],
    "parameters": [
        {"name": "topic", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "Access-Control-Request-Method", "in": "header", "schema": {"type": "string"}},
        {"name": "Access-Control-Request-Headers", "in": "header", "schema": {"type": "string"}},
    ],
    "responses": {
        "200": {
            "description": "allowed",
            "headers": {
                "Access-Control-Allow-Methods": {"schema": {"type": "string"}},
                "Access-Control-Allow-Headers": {"schema": {"type": "string"}},
            },
        }
    },
}


def drop_trailing_slash_aliases(endpoints, **kwargs):
    """Preprocessing hook: ``/topics/`` is an alias of ``/topics``; describe it once."""
    return [endpoint for endpoint in endpoints if endpoint[0] == "/" or not endpoint[0].endswith("/")]


def add_preflight(result, generator, request, public):
    """Postprocessing hook: drf-spectacular leaves OPTIONS out; haraqa's preflight is part of the API."""
    paths = result.get("paths", {})
    if "/topics/{topic}" in paths:
        paths["/topics/{topic}"]["options"] = PREFLIGHT
    if "/topics" in paths:
        paths["/topics"]["options"] = {
            **PREFLIGHT, "operationId": "preflightTopics", "summary": "Preflight of the topic list",
            "parameters": [p for p in PREFLIGHT["parameters"] if p["in"] != "path"],
        }
    return result
