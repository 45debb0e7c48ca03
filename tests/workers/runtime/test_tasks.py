"""workers/runtime/tasks.py: both tasks on a Celery app of the test's own, with a context the test builds
(real Redis, the in-memory S3 twin, the benchmark's zero-cost runner); nothing global is patched.
Called directly, as here, Celery's Task.retry re-raises the exception it was given."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest

from producer.bench.standins import StandInRunner, tiny_png, tiny_png_sha256
from workers.core import clock, keys, schemas
from workers.core.celery_app import make_celery
from workers.core.errors import StorageUnavailable
from workers.core.schemas import ScanMessage
from workers.core.settings import Settings
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime import tasks
from workers.runtime.context import WorkerContext, attach, now
from workers.runtime.publish import audit_key
from workers.runtime.retrying import RetryPolicy

SETTINGS = Settings().with_(broker_url="redis://127.0.0.1:6379/15", max_batch_size=16, visibility_timeout_s=900)


@pytest.fixture()
def worker(clean_redis):
    """(app, ctx): tenderscan's tasks registered on a fresh app, and the context attached to it."""
    runner = StandInRunner(max_batch_size=8, max_wait_s=0.01)
    ctx = WorkerContext(objects=MemoryObjectStore(), verdicts=VerdictStore(redis_client(clean_redis)), runner=runner,
                        policy=RetryPolicy(max_attempts=3), fanout=ThreadPoolExecutor(4))
    app = make_celery(SETTINGS)
    tasks.register(app)
    attach(app, ctx)
    yield app, ctx
    runner.close()
    ctx.fanout.shutdown()


def accepted(ctx) -> ScanMessage:
    """A scan as the edge leaves it: its image in the store, its state in Redis."""
    msg = ScanMessage(scan_id=schemas.new_scan_id(), tenant="acme", store_id="s", terminal_id="t",
                      image_key=keys.image_s3_key("acme", schemas.new_scan_id(), clock.utcnow(), "PNG"),
                      sha256=tiny_png_sha256(), bytes=len(tiny_png()), submitted_at=clock.utcnow())
    ctx.objects.put(msg.image_key, tiny_png())
    ctx.verdicts.create_scan(msg)
    return msg


def multi(msgs) -> dict:
    return {"v": 1, "scans": [m.encode() for m in msgs]}


def test_the_worker_app_registers_both_tasks_acked_late_on_the_scans_queue():
    from workers.app import app as worker_app

    for name in (keys.TASK_NAME, keys.MULTI_TASK_NAME):
        task = worker_app.tasks[name]
        assert task.acks_late is True and task.ignore_result is True and task.max_retries is None
        assert worker_app.conf.task_routes[name] == {"queue": keys.QUEUE}
    assert RetryPolicy.from_settings(SETTINGS).max_retries > 0  # retrying.py bounds retries, not Celery


def test_a_task_without_a_worker_context_says_how_to_run_one():
    app = make_celery(SETTINGS)
    tasks.register(app)
    with pytest.raises(RuntimeError, match="celery -A workers.app worker"):
        app.tasks[keys.TASK_NAME]({})


def test_the_one_scan_task_returns_its_decision_and_rejects_a_message_that_does_not_decode(worker):
    app, ctx = worker
    msg = accepted(ctx)
    assert app.tasks[keys.TASK_NAME](msg.encode()) == ctx.verdicts.get_verdict(msg.scan_id).decision
    broken = accepted(ctx)
    assert app.tasks[keys.TASK_NAME](dict(broken.encode(), v=99)) is None  # acked: nothing to retry
    assert ctx.verdicts.get_verdict(broken.scan_id).reason == "bad_message"


def test_the_one_scan_task_retries_an_outage_then_ends_the_scan_after_the_window(worker):
    app, ctx = worker
    msg = accepted(ctx)
    ctx.objects.down = True
    for _ in range(2 * ctx.policy.max_attempts):  # longer than the poison cap: outages spend no attempt
        with pytest.raises(StorageUnavailable):
            app.tasks[keys.TASK_NAME](msg.encode())
    assert ctx.verdicts.get_verdict(msg.scan_id) is None and ctx.verdicts.get_scan(msg.scan_id)["attempts"] == "0"
    attach(app, replace(ctx, clock=lambda: now() + timedelta(seconds=ctx.policy.window_s + 1)))
    with pytest.raises(StorageUnavailable):  # past the window: its error verdict is stored, its audit record not yet
        app.tasks[keys.TASK_NAME](msg.encode())
    ctx.objects.down = False
    assert app.tasks[keys.TASK_NAME](msg.encode()) == "error"  # the redelivery finds it and writes the audit
    v = ctx.verdicts.get_verdict(msg.scan_id)
    assert (v.decision, v.reason) == ("error", "infrastructure_unavailable")
    assert ctx.objects.get(audit_key(v)).data == v.encode().encode()


def test_the_multi_scan_task_judges_each_scan_and_rejects_a_bad_one_alone(worker):
    app, ctx = worker
    good = [accepted(ctx) for _ in range(3)]
    broken = accepted(ctx)
    raw = {"v": 1, "scans": [m.encode() for m in good] + [dict(broken.encode(), v=99)]}
    counts = app.tasks[keys.MULTI_TASK_NAME](raw)
    assert sum(counts.values()) == 3 and "error" not in counts
    assert all(ctx.verdicts.get_verdict(m.scan_id).batch_size >= 1 for m in good)
    assert ctx.verdicts.get_verdict(broken.scan_id).reason == "bad_message"
    assert ctx.slots.in_use() == 0  # the message gave its slots back


def test_the_multi_scan_task_retries_the_message_when_a_scan_fails(worker):
    app, ctx = worker
    msgs = [accepted(ctx) for _ in range(2)]
    ctx.objects.down = True
    for _ in range(3 * ctx.policy.max_attempts):  # an outage longer than the poison cap
        with pytest.raises(StorageUnavailable):
            app.tasks[keys.MULTI_TASK_NAME](multi(msgs))
    assert all(ctx.verdicts.get_verdict(m.scan_id) is None for m in msgs)  # nothing acked as done
    assert all(ctx.verdicts.get_scan(m.scan_id)["attempts"] == "0" for m in msgs)  # outages refunded
    ctx.objects.down = False
    counts = app.tasks[keys.MULTI_TASK_NAME](multi(msgs))
    assert sum(counts.values()) == 2 and "error" not in counts
    assert {ctx.verdicts.get_verdict(m.scan_id).attempt for m in msgs} == {1}


def test_the_multi_scan_task_ends_scans_after_the_transient_window(worker):
    app, ctx = worker
    msgs = [accepted(ctx) for _ in range(2)]
    ctx.objects.down = True
    with pytest.raises(StorageUnavailable):
        app.tasks[keys.MULTI_TASK_NAME](multi(msgs))
    later = attach(app, replace(ctx, clock=lambda: now() + timedelta(seconds=ctx.policy.window_s + 1)))
    with pytest.raises(StorageUnavailable):  # the error verdicts are in Redis, their audit records are not yet
        app.tasks[keys.MULTI_TASK_NAME](multi(msgs))
    ctx.objects.down = False
    assert app.tasks[keys.MULTI_TASK_NAME](multi(msgs)) == {"error": 2}
    for m in msgs:
        v = later.verdicts.get_verdict(m.scan_id)
        assert (v.decision, v.reason) == ("error", "infrastructure_unavailable") and "window" in v.detail
        assert later.objects.get(audit_key(v)).data == v.encode().encode()
