"""Queue metrics, the /metrics page and the volume collector, through Django's test client."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import MiddlewareNotUsed
from django.test import Client
from prometheus_client import REGISTRY

from queues import metrics
from queues.conf import get_store
from queues.storage.layout import TopicDir

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_volumes) -> Client:
    return Client()


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def produce(client: Client, topic: str, messages: list[bytes]) -> None:
    sizes = ":".join(str(len(m)) for m in messages)
    response = client.post(f"/topics/{topic}", b"".join(messages), content_type="application/octet-stream",
                           headers={"X-Sizes": sizes})
    assert response.status_code == 204


def consume(client: Client, topic: str, msg_id: int = 0, limit: int = 100) -> bytes:
    response = client.get(f"/topics/{topic}", headers={"X-Id": str(msg_id), "X-Limit": str(limit)})
    assert response.status_code == 200, response.headers.get("X-Errors")
    body = b"".join(response.streaming_content)
    response.close()
    return body


def test_produce_and_consume_count_messages_bytes_and_batches(client):
    before = {name: sample(name) for name in (
        "haraqa_produced_messages_total", "haraqa_produced_bytes_total", "produce_batch_size_count",
        "haraqa_consumed_messages_total", "haraqa_consumed_bytes_total", "consume_batch_size_count",
    )}
    small_batches_before = sample("produce_batch_size_bucket", le="10.0")
    client.put("/topics/counted")
    produce(client, "counted", [b"hello", b"world", b""])
    produce(client, "counted", [b"abc"])
    assert consume(client, "counted", 0, 2) == b"helloworld"

    assert sample("haraqa_produced_messages_total") - before["haraqa_produced_messages_total"] == 4
    assert sample("haraqa_produced_bytes_total") - before["haraqa_produced_bytes_total"] == 13
    assert sample("produce_batch_size_count") - before["produce_batch_size_count"] == 2
    assert sample("produce_batch_size_bucket", le="10.0") - small_batches_before == 2
    assert sample("haraqa_consumed_messages_total") - before["haraqa_consumed_messages_total"] == 2
    assert sample("haraqa_consumed_bytes_total") - before["haraqa_consumed_bytes_total"] == 10
    assert sample("consume_batch_size_count") - before["consume_batch_size_count"] == 1


def test_refused_produce_counts_nothing(client):
    client.put("/topics/refused")
    before = sample("haraqa_produced_messages_total")
    response = client.post("/topics/refused", b"short", content_type="application/octet-stream", headers={"X-Sizes": "9"})
    assert response.status_code == 400
    assert sample("haraqa_produced_messages_total") == before


def test_a_consume_served_from_another_volume_counts_as_degraded(client, api_volumes):
    client.put("/topics/degraded")
    produce(client, "degraded", [b"kept", b"safe"])
    os.remove(TopicDir(api_volumes[-1], "degraded").segment_path(0, "dat"))
    before = sample("haraqa_degraded_reads_total")
    assert consume(client, "degraded") == b"keptsafe"
    assert sample("haraqa_degraded_reads_total") - before == 1
    assert consume(client, "degraded", 1) == b"safe"
    assert sample("haraqa_degraded_reads_total") - before == 2


def test_recovery_runs_are_counted_by_result(client, api_volumes):
    client.put("/topics/recovered")
    produce(client, "recovered", [b"one", b"two"])
    store = get_store()
    healthy_before = sample("haraqa_recovery_runs_total", result="healthy")
    metrics.record_recovery(store.check(fix=True))
    assert sample("haraqa_recovery_runs_total", result="healthy") - healthy_before == 1

    os.remove(TopicDir(api_volumes[0], "recovered").segment_path(0, "idx"))
    repaired_before = sample("haraqa_recovery_runs_total", result="repaired")
    repairs_before = sample("haraqa_recovery_repairs_total")
    metrics.record_recovery(store.check(fix=True))
    assert sample("haraqa_recovery_runs_total", result="repaired") - repaired_before == 1
    assert sample("haraqa_recovery_repairs_total") > repairs_before


def test_metrics_page_has_request_queue_and_volume_metrics(client, api_volumes):
    client.put("/topics/scraped")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for volume in api_volumes:
        assert f'haraqa_volume_free_bytes{{volume="{volume}"}}' in text
        assert f'haraqa_volume_size_bytes{{volume="{volume}"}}' in text
    assert 'django_http_responses_total_by_status_total{status="201"}' in text
    assert "haraqa_produced_messages_total" in text and "produce_batch_size_bucket" in text


def test_volume_collector_reports_real_free_space_and_skips_missing_volumes(tmp_path):
    missing = str(tmp_path / "missing")
    families = {f.name: f for f in metrics.VolumeCollector([str(tmp_path), missing]).collect()}
    free = {s.labels["volume"]: s.value for s in families["haraqa_volume_free_bytes"].samples}
    assert set(free) == {str(tmp_path)}
    statvfs = os.statvfs(tmp_path)
    assert abs(free[str(tmp_path)] - statvfs.f_bavail * statvfs.f_frsize) < 64 << 20


def test_no_prometheus_hides_the_page_and_drops_the_middlewares(client, settings):
    settings.HARAQA_PROMETHEUS = False
    assert client.get("/metrics").status_code == 404
    for middleware in (metrics.PrometheusBeforeMiddleware, metrics.PrometheusAfterMiddleware):
        with pytest.raises(MiddlewareNotUsed):
            middleware(lambda request: None)


def test_request_metrics_count_each_request_by_status_view_and_method(client):
    client.put("/topics/requests")
    series = [
        ("django_http_requests_total_by_method_total", {"method": "POST"}),
        ("django_http_responses_total_by_status_total", {"status": "204"}),
        ("django_http_responses_total_by_status_view_method_total", {"status": "204", "view": "topic", "method": "POST"}),
        ("django_http_requests_latency_seconds_by_view_method_count", {"view": "topic", "method": "POST"}),
        ("django_http_requests_before_middlewares_total", {}),
    ]
    before = [sample(name, **labels) for name, labels in series]
    produce(client, "requests", [b"x"])
    assert [sample(name, **labels) - was for (name, labels), was in zip(series, before)] == [1, 1, 1, 1, 1]
