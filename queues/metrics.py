"""Prometheus metrics: the queue's counters and histograms, the request middlewares, ``/metrics``.

Under gunicorn every worker is a process, so the counters live in prometheus_client's
multiprocess mode: ``manage.py serve`` gives each run a fresh ``PROMETHEUS_MULTIPROC_DIR``
(set before prometheus_client is imported, see ``serve.py``), marks exited workers dead and
removes the directory on exit; a scrape, answered by any worker, sums every process's file.
Volume space is not a counter: ``VolumeCollector`` reads it at scrape time, so the engine
never imports prometheus_client.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

from django.core.exceptions import MiddlewareNotUsed
from django.http import Http404, HttpResponse
from django_prometheus import middleware as django_prometheus
from django_prometheus.utils import Time, TimeSince
from prometheus_client import REGISTRY, CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily

from queues.conf import conf

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNER_ENV = "HARAQA_METRICS_DIR_OWNER"  # "<pid>:<1 if serve created the dir>"
DIR_PREFIX = "haraqa-metrics-"  # then the owner's pid: "haraqa-metrics-<pid>-<random>"
BATCH_BUCKETS = (10, 50, 100, 200, 500, 1000, 2000)  # haraqa's

PRODUCED_MESSAGES = Counter("haraqa_produced_messages", "Messages stored by produce requests.")
PRODUCED_BYTES = Counter("haraqa_produced_bytes", "Message bytes stored by produce requests.")
CONSUMED_MESSAGES = Counter("haraqa_consumed_messages", "Messages sent to consumers.")
CONSUMED_BYTES = Counter("haraqa_consumed_bytes", "Message bytes sent to consumers.")
# haraqa's own names, so its dashboards keep working
PRODUCE_BATCH = Histogram("produce_batch_size", "Messages per produce request.", buckets=BATCH_BUCKETS)
CONSUME_BATCH = Histogram("consume_batch_size", "Messages per consume response.", buckets=BATCH_BUCKETS)
RECOVERY_RUNS = Counter(
    "haraqa_recovery_runs", "Check/recovery runs by result: healthy, repaired, unrepairable, problems_found.", ["result"]
)
RECOVERY_REPAIRS = Counter("haraqa_recovery_repairs", "Problems repaired by recovery runs.")
DEGRADED_READS = Counter("haraqa_degraded_reads", "Consumes served from another volume than the last.")
REFUSED_REQUESTS = Counter(
    "haraqa_refused_requests", "Requests refused before Django saw them (unparsable, a head too large), by status.",
    ["status"],
)
# each worker sets its own count; a scrape adds up the workers alive
TOPIC_WATCHES = Gauge("haraqa_topic_watches", "Open topic watches (websockets).", multiprocess_mode="livesum")


def record_produce(messages: int, byte_count: int) -> None:
    PRODUCED_MESSAGES.inc(messages)
    PRODUCED_BYTES.inc(byte_count)
    PRODUCE_BATCH.observe(messages)


def record_consume(sizes: list[int], byte_count: int, degraded_reads: int) -> None:
    """A consume answer of ``byte_count`` bytes; ``degraded_reads`` is the store's running count
    of them in this process."""
    CONSUMED_MESSAGES.inc(len(sizes))
    CONSUMED_BYTES.inc(byte_count)
    CONSUME_BATCH.observe(len(sizes))
    if degraded_reads > _degraded_seen[0]:
        _catch_up_degraded_reads(degraded_reads)


_degraded_seen = [0]
_degraded_guard = threading.Lock()


def _catch_up_degraded_reads(total: int) -> None:
    with _degraded_guard:
        if total > _degraded_seen[0]:
            DEGRADED_READS.inc(total - _degraded_seen[0])
            _degraded_seen[0] = total


def record_refused_request(status: int) -> None:
    REFUSED_REQUESTS.labels(str(status)).inc()


def record_watches(count: int) -> None:
    """This process now holds ``count`` topic watches."""
    TOPIC_WATCHES.set(count)


def record_recovery(report) -> None:
    """A ``Store.check`` run inside the server (startup recovery, admin) and its outcome."""
    RECOVERY_RUNS.labels(report.outcome.replace(" ", "_")).inc()
    RECOVERY_REPAIRS.inc(report.repaired)


class VolumeCollector:
    """Free and total bytes of each configured volume, read at scrape time."""

    def __init__(self, volumes: list[str]):
        self.volumes = volumes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        free = GaugeMetricFamily("haraqa_volume_free_bytes", "Free bytes on the volume's filesystem.", labels=["volume"])
        total = GaugeMetricFamily("haraqa_volume_size_bytes", "Size of the volume's filesystem.", labels=["volume"])
        for volume in self.volumes:
            try:
                usage = shutil.disk_usage(volume)
            except OSError:
                continue  # a missing volume has no space to report; the checks and admin say why
            free.add_metric([volume], usage.free)
            total.add_metric([volume], usage.total)
        yield free
        yield total


class _ProcessRegistry:
    """This process's default registry as one collector (when not in multiprocess mode)."""

    def collect(self):
        return REGISTRY.collect()


def metrics_view(request) -> HttpResponse:
    """``GET /metrics``: every worker's counters plus the volumes, in Prometheus text format."""
    if not conf.prometheus:
        raise Http404("metrics are disabled (--no-prometheus)")
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_ENV in os.environ:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    registry.register(VolumeCollector(conf.volumes))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class PrometheusBeforeMiddleware(django_prometheus.PrometheusBeforeMiddleware):
    """django-prometheus's request metrics, absent with ``--no-prometheus``."""

    def __init__(self, get_response):
        if not conf.prometheus:
            raise MiddlewareNotUsed
        super().__init__(get_response)


class PrometheusAfterMiddleware(django_prometheus.PrometheusAfterMiddleware):
    """django-prometheus's per-request series, trimmed for the queue's hot path: requests by method,
    responses by status and by status/view/method, latency by view/method. The by-transport, AJAX,
    body size and charset series are left out (body sizes are the queue's own byte counters), and the
    labelled children are looked up once, not per request."""

    def __init__(self, get_response):
        if not conf.prometheus:
            raise MiddlewareNotUsed
        super().__init__(get_response)
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels: str):
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def process_request(self, request):
        self._child(self.metrics.requests_by_method, self._method(request)).inc()
        request.prometheus_after_middleware_event = Time()

    def process_view(self, request, view_func, *view_args, **view_kwargs):
        pass

    def process_response(self, request, response):
        method, view, status = self._method(request), self._get_view_name(request), str(response.status_code)
        self._child(self.metrics.responses_by_status, status).inc()
        self._child(self.metrics.responses_by_status_view_method, status, view, method).inc()
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is None:
            self.metrics.requests_unknown_latency.inc()
        else:
            latency = TimeSince(started)
            self._child(self.metrics.requests_latency_by_view_method, view, method).observe(latency)
        return response


# multiprocess bookkeeping for ``manage.py serve``


def multiprocess_dir_ready() -> bool:
    """True in the process that ``prepare_multiprocess_dir`` re-executed."""
    return os.environ.get(OWNER_ENV, "").split(":")[0] == str(os.getpid())


def prepare_multiprocess_dir() -> str:
    """Give this run an empty ``PROMETHEUS_MULTIPROC_DIR``: the one configured, emptied, or a new one.

    The caller must then re-execute itself: prometheus_client picks its mode at import.
    """
    path = os.environ.get(MULTIPROC_ENV)
    created = not path
    if created:
        _remove_abandoned_dirs()
        path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    else:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)  # counters of a previous run would be added to ours
    os.environ[MULTIPROC_ENV] = path
    os.environ[OWNER_ENV] = f"{os.getpid()}:{int(created)}"
    return path


def _remove_abandoned_dirs() -> None:
    """Directories of servers killed before their ``on_exit`` hook could run (``kill -9``)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*-*")):
        owner = os.path.basename(path)[len(DIR_PREFIX) :].split("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    return True


def mark_worker_dead(server, worker) -> None:
    """gunicorn ``child_exit`` hook: drop the exited worker's live gauges."""
    multiprocess.mark_process_dead(worker.pid)


def remove_multiprocess_dir(server) -> None:
    """gunicorn ``on_exit`` hook: remove the directory if serve created it."""
    if os.environ.get(OWNER_ENV, "").endswith(":1"):
        shutil.rmtree(os.environ[MULTIPROC_ENV], ignore_errors=True)
