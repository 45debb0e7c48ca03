"""workers/telemetry.py: the pipeline's own timings become histograms; the queue gauges read real Redis."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from producer.app import Deps, create_app
from workers.core import clock, keys, schemas, telemetry
from workers.core.celery_app import make_celery
from workers.core.schemas import MultiScanMessage, ScanMessage
from workers.core.settings import Settings


def _sample(name: str, labels: dict | None = None, registry=telemetry.REGISTRY) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def _msg(submitted_at: str) -> ScanMessage:
    return ScanMessage(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s1", terminal_id="t1",
                       image_key="k.jpg", sha256="ab" * 32, bytes=3, submitted_at=submitted_at)


def test_a_scan_is_counted_by_decision_and_timed_by_stage():
    before = _sample("tenderscan_scans_total", {"decision": "genuine"})
    fetch_before = _sample("tenderscan_stage_seconds_count", {"stage": "fetch"})
    telemetry.observe_scan("genuine", None, {"fetch_ms": 4.0, "decode_ms": 2.0, "queue_wait_ms": 30.0,
                                           "not_a_stage_ms": 1.0})
    assert _sample("tenderscan_scans_total", {"decision": "genuine"}) == before + 1
    assert _sample("tenderscan_stage_seconds_count", {"stage": "fetch"}) == fetch_before + 1
    assert _sample("tenderscan_stage_seconds_count", {"stage": "not_a_stage"}) == 0


def test_rejections_and_retries_are_errors_by_reason():
    before = _sample("tenderscan_errors_total", {"reason": "image_unreadable"})
    telemetry.observe_scan("rejected", "image_unreadable", {})
    telemetry.observe_error("retry:StorageUnavailable")
    assert _sample("tenderscan_errors_total", {"reason": "image_unreadable"}) == before + 1
    assert _sample("tenderscan_errors_total", {"reason": "retry:StorageUnavailable"}) >= 1


def test_batch_sizes_land_in_the_histogram():
    before = _sample("tenderscan_batch_size_count")
    telemetry.observe_batch(32, 12.5)
    assert _sample("tenderscan_batch_size_count") == before + 1
    assert _sample("tenderscan_batch_size_bucket", {"le": "32.0"}) >= 1


def test_stage_means_agree_in_process_and_scraped():
    telemetry.observe_scan("genuine", None, {"forward_ms": 8.0})
    means = telemetry.stage_means_ms()
    scraped = telemetry.parse_stage_means(telemetry.render().decode())
    assert means and means == scraped
    assert all(v["count"] >= 1 and v["mean_ms"] >= 0 for v in means.values())


def test_cpu_stage_adds_the_blocks_thread_cpu_time_not_its_sleep():
    import time

    before = telemetry.stage_cpu_s()
    with telemetry.cpu_stage("decode"):
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.05:  # 50 ms of this thread's CPU
            pass
    with telemetry.cpu_stage("fetch"):
        time.sleep(0.2)  # waiting costs no CPU
    after = telemetry.stage_cpu_s()
    assert 0.05 <= after["decode"] - before.get("decode", 0.0) < 0.5
    assert after["fetch"] - before.get("fetch", 0.0) < 0.05
    assert set(after) == set(telemetry.CPU_STAGES)


def test_stage_cpu_agrees_in_process_and_scraped():
    with telemetry.cpu_stage("forward"):
        sum(range(10_000))
    assert telemetry.parse_stage_cpu(telemetry.render().decode()) == telemetry.stage_cpu_s()
    with pytest.raises(KeyError):
        telemetry.cpu_stage("not_a_stage")


def test_oldest_submitted_at_reads_single_and_multi_messages(clean_redis):
    app = make_celery(Settings().with_(redis_url=clean_redis))
    first, second = _msg("2026-11-28T10:00:00.000000Z"), _msg("2026-11-28T10:00:05.000000Z")
    app.send_task(keys.TASK_NAME, args=[first.encode()], queue=keys.QUEUE)
    app.send_task(keys.MULTI_TASK_NAME, args=[MultiScanMessage((second,)).encode()],
                  queue=keys.QUEUE)
    r = redis.Redis.from_url(clean_redis)
    assert telemetry.oldest_submitted_at(r.lindex(keys.QUEUE, -1)) == first.submitted_at
    assert telemetry.oldest_submitted_at(r.lindex(keys.QUEUE, 0)) == second.submitted_at
    assert telemetry.oldest_submitted_at(b"garbage") is None and telemetry.oldest_submitted_at(None) is None
    app.close()


def test_queue_collector_reports_depth_and_age(clean_redis):
    app = make_celery(Settings().with_(redis_url=clean_redis))
    submitted = "2026-11-28T10:00:00.000000Z"
    for _ in range(3):
        app.send_task(keys.TASK_NAME, args=[_msg(submitted).encode()], queue=keys.QUEUE)
    registry = CollectorRegistry()
    now = clock.parse_time(submitted) + timedelta(seconds=42)
    registry.register(telemetry.QueueCollector(redis.Redis.from_url(clean_redis), clock=lambda: now))
    assert registry.get_sample_value("tenderscan_queue_depth") == 3
    assert registry.get_sample_value("tenderscan_queue_oldest_age_seconds") == pytest.approx(42)
    assert registry.get_sample_value("tenderscan_backlog") == 3
    # two messages delivered to a worker and not yet acked: out of the list, still backlog for KEDA
    client = redis.Redis.from_url(clean_redis)
    for _ in range(2):
        raw = client.rpop(keys.QUEUE)
        client.hset(keys.UNACKED_KEY, f"tag-{_}", raw)
    assert registry.get_sample_value("tenderscan_queue_depth") == 1
    assert registry.get_sample_value("tenderscan_backlog") == 3
    app.close()


def test_queue_collector_on_an_empty_queue_and_a_dead_redis(clean_redis):
    registry = CollectorRegistry()
    registry.register(telemetry.QueueCollector(redis.Redis.from_url(clean_redis)))
    assert registry.get_sample_value("tenderscan_queue_depth") == 0
    assert registry.get_sample_value("tenderscan_queue_oldest_age_seconds") == 0
    dead = CollectorRegistry()
    dead.register(telemetry.QueueCollector(redis.Redis(port=1, socket_connect_timeout=0.2)))
    assert dead.get_sample_value("tenderscan_queue_depth") is None  # no sample, not a failed scrape


def test_the_api_serves_metrics(clean_redis):
    settings = Settings().with_(redis_url=clean_redis,
                                api_keys={hashlib.sha256(b"k").hexdigest(): "acme"})
    with TestClient(create_app(settings, Deps.with_twins(settings))) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert "tenderscan_queue_depth 0.0" in resp.text


def test_the_worker_exporter_is_off_on_port_zero():
    assert telemetry.serve(0) is None


def test_the_worker_exporter_serves_the_registry_until_shut_down():
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = telemetry.serve(port, addr="127.0.0.1")
    try:
        telemetry.observe_batch(4, 1.0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "tenderscan_batch_size_count" in body
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


# --- the review console's metrics -----------------------------------------------------------------
def test_review_queue_gauges_per_tenant_read_the_sorted_sets(clean_redis):
    r = redis.Redis.from_url(clean_redis)
    r.zadd(keys.review_queue_key("acme"), {"a" * 32: 1000.0, "b" * 32: 1100.0, "c" * 32: 1500.0})
    r.zadd(keys.review_queue_key("globex"), {"d" * 32: 1900.0})
    r.sadd(keys.REVIEW_TENANTS_KEY, "acme", "globex", "initech")  # initech's queue was emptied
    registry = CollectorRegistry()
    registry.register(telemetry.ReviewQueueCollector(r, clock=lambda: 2000.0))
    depth = "tenderscan_review_queue_depth"
    age = "tenderscan_review_queue_oldest_age_seconds"
    assert registry.get_sample_value(depth, {"tenant": "acme"}) == 3
    assert registry.get_sample_value(age, {"tenant": "acme"}) == 1000.0  # the oldest, not the newest
    assert registry.get_sample_value(depth, {"tenant": "globex"}) == 1
    assert registry.get_sample_value(age, {"tenant": "globex"}) == 100.0
    assert registry.get_sample_value(depth, {"tenant": "initech"}) == 0
    assert registry.get_sample_value(age, {"tenant": "initech"}) == 0
    dead = CollectorRegistry()
    dead.register(telemetry.ReviewQueueCollector(redis.Redis(port=1, socket_connect_timeout=0.2)))
    assert dead.get_sample_value(depth, {"tenant": "acme"}) is None


def test_review_counters_by_reviewer_decision_label_and_sign():
    registry = CollectorRegistry()
    m = telemetry.ReviewMetrics(registry)
    signs = ["ink", "microprint", "thread"]
    m.observe_review("ann@acme", "review", "counterfeit", signs, detected=["ink", "thread"], seen=["ink"])
    m.observe_review("ann@acme", "genuine", "genuine", signs, detected=[], seen=[])
    m.observe_review("bob@acme", "genuine", "counterfeit", signs, detected=[], seen=["microprint"])
    m.observe_undo("bob@acme")
    get = registry.get_sample_value
    assert get("tenderscan_reviews_total", {"reviewer": "ann@acme"}) == 2
    assert get("tenderscan_reviews_total", {"reviewer": "bob@acme"}) == 1
    assert get("tenderscan_reviews_undone_total", {"reviewer": "bob@acme"}) == 1
    assert get("tenderscan_review_agreement_total", {"model_decision": "genuine", "label": "genuine"}) == 1
    assert get("tenderscan_review_agreement_total", {"model_decision": "genuine", "label": "counterfeit"}) == 1
    assert get("tenderscan_review_agreement_total", {"model_decision": "review", "label": "counterfeit"}) == 1

    def sign(name, model, reviewer):
        return get("tenderscan_review_signs_total", {"sign": name, "model": model, "reviewer": reviewer}) or 0
    assert sign("ink", "detected", "seen") == 1
    assert sign("thread", "detected", "not") == 1  # the model saw it, the reviewer did not
    assert sign("microprint", "not", "seen") == 1  # the reviewer saw what the model missed
    assert sign("microprint", "not", "not") == 2 and sign("ink", "not", "not") == 2
    assert sum(sign(s, a, b) for s in signs for a in ("detected", "not") for b in ("seen", "not")) == 9
