"""The admin's custom pages: topics, one topic and its messages, volumes and recovery runs,
and the history (admin log) of a topic and of the volumes.

Thin views: parse the request, call the engine (through ``conf``) or ``storage.stats``,
shape a template context. Engine errors and 404s that fail a page meet HTTP in
``AdminPageView.dispatch``, as admin pages (the root URLconf's handler404 answers as the API
does); the few caught nearer are shown in the page instead (an unreadable topic's row, a
damaged or truncated message, a bad filter). Message bytes reach templates as plain strings,
so autoescaping always applies.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.generic import TemplateView

from . import admin_jobs
from .conf import get_store
from .models import Topic, Volume
from .storage import (
    InvalidRegex,
    InvalidTopic,
    MessageDamaged,
    MessageIdTruncated,
    NoContent,
    Offsets,
    StorageError,
    TopicNotFound,
    go_lower,
    normalize_topic,
)
from .storage.report import format_ranges, outcome
from .storage.stats import (
    TopicStats,
    VolumeBadge,
    browse,
    segment_table,
    served_stats,
    topic_health,
    volume_stats,
)

if TYPE_CHECKING:
    from .admin import StorageModelAdmin

TOPICS_PER_PAGE = 50
MESSAGES_PER_PAGE = 20
SEGMENTS_PER_PAGE = 20
HISTORY_PER_PAGE = 50
LIST_PREVIEW_BYTES = 256
MESSAGE_PREVIEW_BYTES = 64 * 1024
AUTO_VERIFY_BYTES = 8 * 1024 * 1024  # topic pages verify every checksum below this size
CHART_TOPICS = 10
SORT_KEYS = {
    "first_id": lambda s: s.first_id,
    "last_id": lambda s: -1 if s.last_id is None else s.last_id,
    "messages": lambda s: s.messages,
    "bytes": lambda s: s.bytes,
    "segments": lambda s: s.segments,
    "last_write": lambda s: s.last_write or 0,
}


class AdminPageView(TemplateView):
    """Base of every page: permission check, error mapping and the admin's context."""

    model_admin: StorageModelAdmin | None = None
    permission = "queues.view_topics"
    title = ""

    def dispatch(self, request, *args, **kwargs):
        if not request.user.has_perm(self.permission):
            raise PermissionDenied
        try:
            self.load()
            return super().dispatch(request, *args, **kwargs)
        except (TopicNotFound, InvalidTopic):
            return self.not_found("No such topic", self.admin_url("changelist"), "the topics",
                                  history_url=self.missing_topic_history_url())
        except Http404 as exc:
            return self.not_found(str(exc), self.back_url(), self.back_label())
        except StorageError as exc:
            if request.method == "POST":
                messages.error(request, f"The storage engine refused: {exc}")
                return HttpResponseRedirect(self.back_url())
            return self.error_page("admin/queues/storage_error.html", 503, title="Storage error", error=str(exc))

    def not_found(self, reason: str, back_url: str, back_label: str, **context: Any) -> TemplateResponse:
        """The admin's own 404 page: the root URLconf's handler404 answers as haraqa's API does."""
        return self.error_page("admin/queues/not_found.html", 404, title="Not found", reason=reason,
                               back_url=back_url, back_label=back_label, **context)

    def error_page(self, template: str, status: int, **context: Any) -> TemplateResponse:
        """A page in the admin's frame, in place of the view's own."""
        context = {**self.model_admin.admin_site.each_context(self.request), "opts": self.model_admin.opts, **context}
        return TemplateResponse(self.request, template, context, status=status)

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        return {
            **self.model_admin.admin_site.each_context(self.request),
            "opts": self.model_admin.opts,
            "title": self.get_title(),
            "has_change_permission": self.model_admin.has_change_permission(self.request),
            **context,
        }

    def load(self) -> None:
        """Hook: find the page's object before the handler runs, inside the error mapping."""

    def back_url(self) -> str:
        """Where a failed action sends the user back to."""
        return self.admin_url("changelist")

    def back_label(self) -> str:
        """What ``back_url`` shows, for a link saying "Back to ..."."""
        return f"the {self.model_admin.opts.verbose_name_plural}"

    def missing_topic_history_url(self) -> str | None:
        """Where the 404 page of a topic that is gone finds its history, if it has one."""
        return None

    def get_title(self) -> str:
        return self.title

    def admin_url(self, name: str, *args: Any) -> str:
        info = (self.model_admin.opts.app_label, self.model_admin.opts.model_name, name)
        return reverse("admin:%s_%s_%s" % info, args=args, current_app=self.model_admin.admin_site.name)

    def log(self, objects: list[Topic] | list[Volume], message: str, flag: int = CHANGE) -> None:
        LogEntry.objects.log_actions(self.request.user.pk, objects, flag, message)


def page_not_found(request: HttpRequest) -> TemplateResponse:
    """The 404 of an address under the admin that no page has (the admin asks for a sign-in first)."""
    context = {**admin.site.each_context(request), "title": "Not found"}
    return TemplateResponse(request, "admin/queues/page_not_found.html", context, status=404)


class TopicPageView(AdminPageView):
    """A page about the topic named (quoted) in the URL."""

    @cached_property
    def topic(self) -> str:
        return normalize_topic(unquote(self.kwargs["topic"]))

    @cached_property
    def offsets(self) -> Offsets:
        """Raises TopicNotFound, so every topic page of a missing topic is a 404."""
        return get_store().offsets(self.topic)

    def load(self) -> None:
        self.offsets  # noqa: B018 - resolving it turns a missing topic into a 404

    def topic_url(self, name: str = "change", *args: Any) -> str:
        return self.admin_url(name, quote(self.topic), *args)

    def back_url(self) -> str:
        return self.topic_url()

    def back_label(self) -> str:
        return f"topic {self.topic}"

    def missing_topic_history_url(self) -> str | None:
        try:
            logged = topic_log(self.topic).exists()
        except InvalidTopic:
            return None
        return self.topic_url("history") if logged else None

    def get_title(self) -> str:
        return f"{self.title} {self.topic}".strip()

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        return super().get_context_data(
            topic_name=self.topic, offsets=self.offsets, topic_url=self.topic_url(), **kwargs
        )


# topics


@dataclass
class TopicRow:
    name: str
    stats: TopicStats | None  # None: the commit record is unreadable
    badges: list[VolumeBadge]

    @property
    def last_write(self) -> datetime | None:
        if self.stats is None or self.stats.last_write is None:
            return None
        return datetime.fromtimestamp(self.stats.last_write, tz=timezone.utc)


def filtered_topics(request: HttpRequest) -> tuple[list[str], str]:
    """The topics the filter box (``q``, ``mode``: a literal prefix or a regex) selects, and
    an error message for an invalid regex. Both ignore case, as topic names are lower-case."""
    query, mode = request.GET.get("q", ""), request.GET.get("mode", "prefix")
    try:
        if mode == "regex" and query:
            return get_store().list_topics(query, ignore_case=True), ""
        return get_store().list_topics(prefix=go_lower(query)), ""
    except InvalidRegex as exc:
        return [], f"Invalid regular expression: {exc.reason}"


def all_stats(names: list[str]) -> list[TopicStats]:
    """Stats of every listed topic, from the volume each is served from."""
    volumes = get_store().volumes
    return [s for s in (served_stats(volumes, name)[0] for name in names) if s is not None]


class TopicListView(AdminPageView):
    template_name = "admin/queues/topic_list.html"
    title = "Topics"

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        order = self.request.GET.get("o", "name")
        field, descending = order.lstrip("-"), order.startswith("-")
        store = get_store()
        names, error = filtered_topics(self.request)
        if field in SORT_KEYS:
            # Sorting by a figure needs every topic's stats: one listing and commit read each.
            items: list = sorted(all_stats(names), key=SORT_KEYS[field], reverse=descending)
        else:
            field, items = "name", names[::-1] if descending else names
        page = Paginator(items, TOPICS_PER_PAGE).get_page(self.request.GET.get("p"))
        rows = []
        for item in page:
            stats = item if isinstance(item, TopicStats) else served_stats(store.volumes, item)[0]
            name = item.name if isinstance(item, TopicStats) else item
            rows.append(TopicRow(name, stats, topic_health(store.volumes, name)))
        return super().get_context_data(
            rows=rows,
            page=page,
            page_links=page_links(page, self.request, "p"),
            total=len(names),
            query=self.request.GET.get("q", ""),
            mode=self.request.GET.get("mode", "prefix"),
            error=error,
            columns=sort_columns(field, descending),
            order=f"-{field}" if descending else field,
            volumes=store.volumes,
            chart_url=self.admin_url("chart"),
            **kwargs,
        )


def sort_columns(field: str, descending: bool) -> list[dict[str, str]]:
    """Header cells: label, the ``o`` value a click asks for, and the current arrow."""
    columns = []
    for key, label in (("name", "Topic"), ("first_id", "First id"), ("last_id", "Last id"), ("messages", "Messages"),
                       ("bytes", "Bytes"), ("segments", "Segments"), ("last_write", "Last write")):
        current = key == field
        first_click = key if key == "name" else f"-{key}"  # figures sort largest first
        columns.append({
            "label": label,
            "order": (key if descending else f"-{key}") if current else first_click,
            "arrow": ("▼" if descending else "▲") if current else "",
        })
    return columns


def page_links(page: Page, request: HttpRequest, param: str) -> list[dict[str, Any]]:
    """Links to the pages around the current one (``url`` None marks a gap), keeping the query."""
    links = []
    for number in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
        if not isinstance(number, int):
            links.append({"number": "…", "url": None, "current": False})
            continue
        query = request.GET.copy()
        query[param] = str(number)
        links.append({"number": number, "url": f"?{query.urlencode()}", "current": number == page.number})
    return links


class TopicChartView(AdminPageView):
    """JSON for the chart: the largest filtered topics by bytes and by messages."""

    def get(self, request, *args, **kwargs):
        stats = all_stats(filtered_topics(request)[0])

        def top(key: str) -> list[dict[str, Any]]:
            largest = sorted(stats, key=SORT_KEYS[key], reverse=True)[:CHART_TOPICS]
            return [{"name": s.name, "value": SORT_KEYS[key](s)} for s in largest if SORT_KEYS[key](s)]

        return JsonResponse({"bytes": top("bytes"), "messages": top("messages")})


# one topic


class ProduceForm(forms.Form):
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), strip=False, required=False,
        help_text="Stored as UTF-8. Line breaks are stored as LF (\\n), not as the CRLF browsers send.",
    )

    def clean_body(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; the operator typed plain line breaks.
        return self.cleaned_data["body"].replace("\r\n", "\n").replace("\r", "\n")


ID_ERROR = "Enter a whole number, 1 or more."


class TruncateForm(forms.Form):
    before_id = forms.IntegerField(min_value=1, required=False, label="Before id",
                                   error_messages={"invalid": ID_ERROR, "min_value": ID_ERROR})
    before = forms.DateTimeField(required=False, label="Before time (UTC)",
                                 widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors and data.get("before_id") is None and data.get("before") is None:
            raise forms.ValidationError("Give an id, a time, or both.")
        if data.get("before") is not None:
            data["before"] = data["before"].astimezone(timezone.utc)
        return data


def form_errors(form: forms.Form) -> str:
    """An invalid form's errors as one line; a field's own start with its label."""
    return " ".join(
        error if field == NON_FIELD_ERRORS else f"{form[field].label}: {error}"
        for field, errors in form.errors.items()
        for error in errors
    )


@dataclass(frozen=True)
class Preview:
    kind: str  # "text", "json" or "hex"
    text: str


def preview(data: bytes, complete: bool) -> Preview:
    """Text, pretty JSON or a hex dump of ``data``; the template escapes whatever it is."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A preview may cut a character in two: that alone does not make it binary.
        text = data[: exc.start].decode("utf-8") if not complete and exc.start >= len(data) - 3 else None
    if text is not None and not any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        if complete and text.lstrip()[:1] in ("{", "["):
            try:
                return Preview("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False))
            except ValueError:
                pass
        return Preview("text", text)
    return Preview("hex", hexdump(data))


def hexdump(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  |{ascii_}|")
    return "\n".join(lines)


def timestamp(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


class TopicDetailView(TopicPageView):
    template_name = "admin/queues/topic_detail.html"
    title = "Topic"

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        store, topic, offsets = get_store(), self.topic, self.offsets
        stats, served_from = served_stats(store.volumes, topic)
        verify = self.request.GET.get("verify") == "1" or (stats is not None and stats.bytes <= AUTO_VERIFY_BYTES)
        start = max(_int(self.request.GET.get("from"), offsets.min_offset), offsets.min_offset)
        found, browser_error = [], "messages were truncated faster than this page could read them; reload it"
        for _ in range(3):  # truncates may remove the first messages while the page reads them
            try:
                found, browser_error = browse(store, topic, start, MESSAGES_PER_PAGE, LIST_PREVIEW_BYTES), ""
                break
            except MessageIdTruncated as exc:
                start = exc.first_id
            except StorageError as exc:
                browser_error = str(exc)
                break
        newest = max(offsets.min_offset, offsets.max_offset - MESSAGES_PER_PAGE)
        # Segments are paged (a long topic has hundreds); the newest, where writes land, first shown.
        paginator = Paginator(range(stats.segments if stats else 1), SEGMENTS_PER_PAGE)
        segment_page = paginator.get_page(self.request.GET.get("sp") or paginator.num_pages)
        shown = segment_page.object_list
        return super().get_context_data(
            stats=stats,
            served_from=served_from,
            volumes=segment_table(store.volumes, topic, verify, shown.start, len(shown)),
            segment_page=segment_page,
            segment_page_links=page_links(segment_page, self.request, "sp"),
            verified=verify,
            rows=[
                {"info": m, "time": timestamp(m.timestamp_ns), "preview": preview(m.head, m.complete)} for m in found
            ],
            browser_error=browser_error,
            paging={
                "first": offsets.min_offset if start > offsets.min_offset else None,
                "previous": max(offsets.min_offset, start - MESSAGES_PER_PAGE) if start > offsets.min_offset else None,
                "next": start + len(found) if start + len(found) < offsets.max_offset else None,
                "newest": newest if start < newest else None,
            },
            produce_form=ProduceForm(),
            truncate_form=TruncateForm(),
            **kwargs,
        )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class MessageView(TopicPageView):
    template_name = "admin/queues/message.html"
    title = "Message in"

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        message_id = self.kwargs["message_id"]
        try:
            found = browse(get_store(), self.topic, message_id, 1, MESSAGE_PREVIEW_BYTES)
        except MessageIdTruncated:
            found = []
        if not found:
            raise Http404("No such message")
        message = found[0]
        if message.damaged:
            raise Http404("This message is damaged on every volume and is not served")
        return super().get_context_data(
            message=message,
            time=timestamp(message.timestamp_ns),
            preview=preview(message.head, message.complete),
            raw_url=self.topic_url("message_raw", message_id),
            **kwargs,
        )


class MessageRawView(TopicPageView):
    """The message's bytes as a download, straight from the data file."""

    def get(self, request, *args, **kwargs):
        message_id = self.kwargs["message_id"]
        try:
            found = get_store().consume(self.topic, message_id, 1)
        except (NoContent, MessageIdTruncated, MessageDamaged):
            raise Http404("No such message") from None
        filename = f"{self.topic.replace('/', '_')}-{message_id}.bin"
        response = FileResponse(
            found.open(), as_attachment=True, filename=filename, content_type="application/octet-stream"
        )
        response["Content-Length"] = str(found.byte_count)
        return response


class ProduceView(TopicPageView):
    permission = "queues.change_topics"
    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        form = ProduceForm(request.POST)
        if not form.is_valid():
            messages.error(request, "The message could not be read from the form.")
            return HttpResponseRedirect(self.topic_url())
        body = form.cleaned_data["body"].encode("utf-8")
        message_id = get_store().produce(self.topic, [len(body)], io.BytesIO(body))
        self.log([Topic(name=self.topic)], f"Produced message {message_id} ({len(body)} bytes)")
        messages.success(request, f"Produced message {message_id} ({len(body)} bytes).")
        return HttpResponseRedirect(f"{self.topic_url()}?from={message_id}")


class TruncateView(TopicPageView):
    """GET: the confirmation page for the asked truncation; POST: do it."""

    permission = "queues.change_topics"
    template_name = "admin/queues/confirm_truncate.html"
    title = "Truncate"

    def get(self, request, *args, **kwargs):
        form = TruncateForm(request.GET)
        if not form.is_valid():
            messages.error(request, form_errors(form))
            return HttpResponseRedirect(self.topic_url())
        return self.render_to_response(self.get_context_data(form=form, request_data=form.cleaned_data))

    def post(self, request, *args, **kwargs):
        form = TruncateForm(request.POST)
        if not form.is_valid():
            return HttpResponse(status=400)
        store, topic, offsets_before = get_store(), self.topic, self.offsets
        after = store.truncate(topic, before_id=form.cleaned_data["before_id"], before=form.cleaned_data["before"])
        asked = ", ".join(f"{k}={v}" for k, v in form.cleaned_data.items() if v is not None)
        if after.min_offset != offsets_before.min_offset:
            result = f"first stored id {offsets_before.min_offset} -> {after.min_offset}"
            messages.success(request, f"Truncated {topic}: {result}.")
        else:
            result = f"nothing removed, first stored id stays {after.min_offset}"
            messages.warning(request, f"Nothing was removed from {topic}: only whole segments whose messages all "
                                      f"precede the bound go, and never the active segment. "
                                      f"The first stored id stays {after.min_offset}.")
        self.log([Topic(name=topic)], f"Truncated ({asked}): {result}")
        return HttpResponseRedirect(self.topic_url())


class DeleteView(TopicPageView):
    """GET: the confirmation page; POST: delete the topic from every volume."""

    permission = "queues.change_topics"
    template_name = "admin/queues/confirm_delete.html"
    title = "Delete"

    def post(self, request, *args, **kwargs):
        topic = self.topic
        get_store().delete_topic(topic)
        self.model_admin.log_deletions(request, [Topic(name=topic)])  # once done, as the other actions log
        messages.success(request, f"Deleted topic {topic}.")
        return HttpResponseRedirect(self.admin_url("changelist"))


# history: the admin log, which outlives what it tells of


def log_entries(model: type[Topic] | type[Volume]) -> QuerySet[LogEntry]:
    """The admin log entries of ``model``'s objects, newest first."""
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)  # as log_actions
    return LogEntry.objects.filter(content_type=content_type).select_related("user").order_by("-action_time", "-pk")


def topic_log(topic: str) -> QuerySet[LogEntry]:
    return log_entries(Topic).filter(object_id=topic)


def history_context(request: HttpRequest, entries: QuerySet[LogEntry]) -> dict[str, Any]:
    page = Paginator(entries, HISTORY_PER_PAGE).get_page(request.GET.get("p"))
    return {"entries": page, "page_links": page_links(page, request, "p")}


class TopicHistoryView(TopicPageView):
    """The topic's log entries: time, user and what was done, also once the topic is deleted."""

    template_name = "admin/queues/topic_history.html"
    title = "History of"

    @cached_property
    def offsets(self) -> Offsets | None:
        """None once the topic is deleted: its page is gone, its history is not."""
        try:
            return get_store().offsets(self.topic)
        except TopicNotFound:
            return None

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        return super().get_context_data(**history_context(self.request, topic_log(self.topic)), **kwargs)


class VolumeHistoryView(AdminPageView):
    """Checks and recoveries started from the admin: one log entry per volume."""

    permission = "queues.view_volumes"
    template_name = "admin/queues/volume_history.html"
    title = "History of the volumes"

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        return super().get_context_data(**history_context(self.request, log_entries(Volume)), **kwargs)


# volumes and recovery


class VolumeListView(AdminPageView):
    permission = "queues.view_volumes"
    template_name = "admin/queues/volume_list.html"
    title = "Volumes"

    def get_context_data(self, **kwargs) -> dict[str, Any]:
        run = admin_jobs.read_state()
        return super().get_context_data(
            volumes=volume_stats(get_store().volumes),
            run=run,
            run_started=_epoch(run and run["started_at"]),
            run_finished=_epoch(run and run["finished_at"]),
            report=report_context(run["report"]) if run and run["report"] else None,
            can_recover=self.request.user.has_perm("queues.can_recover"),
            status_url=self.admin_url("run_status"),
            **kwargs,
        )


def _epoch(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=timezone.utc) if seconds else None


def report_context(report: dict[str, Any]) -> dict[str, Any]:
    """A run's report (``Report.to_dict()``) as the page shows it."""
    return {
        # runs recorded before the outcome was kept have its parts
        "result": report.get("outcome") or outcome(report["healthy"], report["ok"], bool(report["lost"])),
        "summary": [
            ("Topics", report["topics"]),
            ("Segments checked", report["segments"]),
            ("Bytes checked", filesizeformat(report["bytes_checked"])),
            ("Bytes written", filesizeformat(report["bytes_copied"])),
            ("Problems found", len(report["problems"])),
            ("Repaired", report["repaired"]),
            ("Unrepairable messages", report["unrepairable"]),
        ],
        "problems": [
            {**problem, "ids": format_ranges([tuple(run) for run in problem["ids"]])} for problem in report["problems"]
        ],
        "lost": report["lost"],
    }


class RunStatusView(AdminPageView):
    permission = "queues.view_volumes"

    def get(self, request, *args, **kwargs):
        return JsonResponse({"run": admin_jobs.read_state()})


class StartRunView(AdminPageView):
    """POST only: start a check (dry run) or a recovery in the background."""

    permission = "queues.can_recover"
    http_method_names = ["post"]
    fix = False

    def post(self, request, *args, **kwargs):
        verb = "Recovery" if self.fix else "Check (dry run)"
        try:
            run = admin_jobs.start_run(self.fix, request.user.get_username())
        except admin_jobs.RunInProgress as exc:
            messages.warning(request, str(exc))
        else:
            self.log([Volume(path=v) for v in get_store().volumes], f"{verb} started (run {run['id']})")
            messages.success(request, f"{verb} started.")
        return HttpResponseRedirect(self.admin_url("changelist"))


class CheckView(StartRunView):
    fix = False


class RecoverView(StartRunView):
    fix = True
