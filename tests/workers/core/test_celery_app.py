"""workers/core/celery_app.py, workers/runtime/worker.py, workers/runtime/tasks.py and `tenderscan worker`: the queue settings that
make delivery safe, checked against what Celery and kombu actually do with them."""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads, prepare_accept_content

from workers.core import clock, keys, schemas
from workers.core.celery_app import make_celery
from workers.core.schemas import ScanMessage
from workers.core.settings import Settings

SETTINGS = Settings().with_(broker_url="redis://127.0.0.1:6379/15", max_batch_size=16, visibility_timeout_s=900)


@pytest.fixture()
def app():
    return make_celery(SETTINGS)


def test_only_json_is_accepted_and_a_pickle_body_is_refused(app):
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    accept = prepare_accept_content(app.conf.accept_content)  # what the worker's consumer applies
    body = pickle.dumps(([{"scan_id": "x"}], {}, {}))
    with pytest.raises(ContentDisallowed):
        loads(body, "application/x-python-serialize", "binary", accept=accept)
    ctype, enc, data = dumps(([{"scan_id": "x"}], {}, {}), serializer=app.conf.task_serializer)
    assert loads(data, ctype, enc, accept=accept) == [[{"scan_id": "x"}], {}, {}]


def test_delivery_is_acked_late_and_redelivered_if_the_worker_dies(app):
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_ignore_result is True


def test_prefetch_is_one_message_per_task_thread_sized_by_the_batch(app):
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_concurrency == 32 == 2 * SETTINGS.max_batch_size


def test_visibility_timeout_and_time_limits_come_from_settings(app):
    assert app.conf.broker_transport_options["visibility_timeout"] == 900
    assert app.conf.task_soft_time_limit == SETTINGS.task_soft_time_limit_s
    assert app.conf.task_time_limit == SETTINGS.task_time_limit_s
    assert app.conf.broker_url == "redis://127.0.0.1:6379/15"


def test_the_task_is_routed_to_the_scans_queue(app):
    assert app.conf.task_default_queue == keys.QUEUE
    assert app.amqp.router.route({}, keys.TASK_NAME)["queue"].name == keys.QUEUE


def test_worker_app_registers_the_task_with_late_acks():
    from workers.app import app as worker_app
    from workers.runtime import tasks

    task = worker_app.tasks[keys.TASK_NAME]
    assert task.name == tasks.process_scan.name
    assert task.acks_late is True and task.ignore_result is True and task.max_retries == tasks.MAX_RETRIES
    assert tasks.MAX_RETRIES is None and tasks.POLICY.max_retries > 0  # retrying.py bounds retries, not Celery


def test_producer_side_import_stays_torch_free():
    code = ("import sys, workers.core.celery_app as c, workers.core.settings as s; c.make_celery(s.Settings()); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_tenderscan_worker_defaults_to_threads_sized_by_the_batch():
    from producer.cli.commands.worker import worker_argv

    args = argparse.Namespace(concurrency=None, pool="threads", loglevel=None, queues=None, hostname=None)
    assert worker_argv(args, SETTINGS) == ["worker", "--pool=threads", "--concurrency=32",
                                           f"--queues={keys.QUEUE}", "--loglevel=INFO"]
    solo = argparse.Namespace(concurrency=None, pool="solo", loglevel="DEBUG", queues="q1", hostname="w1@%h")
    assert worker_argv(solo, SETTINGS) == ["worker", "--pool=solo", "--concurrency=1", "--queues=q1",
                                           "--loglevel=DEBUG", "--hostname=w1@%h"]


# --- the multi-scan task (tenderscan.process_scans) -------------------------------------------------------
@pytest.fixture()
def multi_deps(clean_redis, monkeypatch):
    from producer.bench.standins import StandInRunner
    from workers.core import imaging
    from workers.core.storage import MemoryObjectStore
    from workers.core.verdict_store import VerdictStore, redis_client
    from workers.runtime import pipeline, tasks

    runner = StandInRunner(max_batch_size=8, max_wait_s=0.01)
    deps = pipeline.Deps(MemoryObjectStore(), VerdictStore(redis_client(clean_redis)), runner, imaging.Limits())
    monkeypatch.setattr(tasks, "deps", lambda: deps)
    yield deps
    runner.close()


def _tiny_scan(deps) -> ScanMessage:
    from producer.bench.standins import tiny_png, tiny_png_sha256

    msg = ScanMessage(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s", terminal_id="t",
                               image_key=f"scans/{schemas.new_scan_id()}.png", sha256=tiny_png_sha256(),
                               bytes=len(tiny_png()), submitted_at=clock.utcnow())
    deps.objects.put(msg.image_key, tiny_png())
    deps.verdicts.create_scan(msg)
    return msg


def test_the_multi_scan_task_is_acked_late_and_routed_to_the_scans_queue(app):
    from workers.runtime import tasks

    assert tasks.process_scans.name == keys.MULTI_TASK_NAME and tasks.process_scans.acks_late is True
    assert app.conf.task_routes[keys.MULTI_TASK_NAME] == {"queue": keys.QUEUE}


def test_the_multi_scan_task_judges_each_scan_and_rejects_a_bad_one_alone(multi_deps):
    from workers.runtime import tasks

    good = [_tiny_scan(multi_deps) for _ in range(3)]
    broken = _tiny_scan(multi_deps)
    raw = {"v": 1, "scans": [m.encode() for m in good] + [dict(broken.encode(), v=99)]}
    counts = tasks.process_scans(raw)
    assert sum(counts.values()) == 3 and "failed" not in counts
    assert all(multi_deps.verdicts.get_verdict(m.scan_id).batch_size >= 1 for m in good)
    assert multi_deps.verdicts.get_verdict(broken.scan_id).reason == "bad_message"


def test_the_multi_scan_task_retries_the_message_when_a_scan_fails(multi_deps):
    from workers.core.errors import StorageUnavailable
    from workers.runtime import tasks

    msgs = [_tiny_scan(multi_deps) for _ in range(2)]
    multi_deps.objects.down = True
    for _ in range(3 * multi_deps.max_attempts):  # an outage longer than the poison cap
        with pytest.raises(StorageUnavailable):  # called directly, Task.retry re-raises the cause
            tasks.process_scans({"v": 1, "scans": [m.encode() for m in msgs]})
    assert all(multi_deps.verdicts.get_verdict(m.scan_id) is None for m in msgs)  # nothing acked as done
    assert all(multi_deps.verdicts.get_scan(m.scan_id)["attempts"] == "0" for m in msgs)  # outages refunded
    multi_deps.objects.down = False
    counts = tasks.process_scans({"v": 1, "scans": [m.encode() for m in msgs]})
    assert sum(counts.values()) == 2 and "failed" not in counts and "error" not in counts
    assert {multi_deps.verdicts.get_verdict(m.scan_id).attempt for m in msgs} == {1}


def test_the_multi_scan_task_ends_scans_after_the_transient_window(multi_deps, monkeypatch):
    from dataclasses import replace
    from datetime import timedelta

    from workers.core.errors import StorageUnavailable
    from workers.runtime import pipeline, tasks
    from workers.runtime.publish import audit_key

    msgs = [_tiny_scan(multi_deps) for _ in range(2)]
    multi_deps.objects.down = True
    with pytest.raises(StorageUnavailable):
        tasks.process_scans({"v": 1, "scans": [m.encode() for m in msgs]})
    later = replace(multi_deps, clock=lambda: pipeline._now() + timedelta(seconds=tasks.POLICY.window_s + 1))
    monkeypatch.setattr(tasks, "deps", lambda: later)
    with pytest.raises(StorageUnavailable):  # the error verdicts are in Redis, their audit records are not yet
        tasks.process_scans({"v": 1, "scans": [m.encode() for m in msgs]})
    multi_deps.objects.down = False
    assert tasks.process_scans({"v": 1, "scans": [m.encode() for m in msgs]}) == {"error": 2}
    for m in msgs:
        v = later.verdicts.get_verdict(m.scan_id)
        assert (v.decision, v.reason) == ("error", "infrastructure_unavailable") and "window" in v.detail
        assert later.objects.get(audit_key(v)).data == v.encode().encode()
