"""workers/runtime/context.py and the hooks in workers/runtime/worker.py that build it: what is built
before a fork and what after, once; the services it starts and stops. Real Redis, a real (tiny)
checkpoint; the Celery side is the worker module's own hooks, called as Celery calls them."""

from __future__ import annotations

import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from producer.bench.standins import StandInRunner
from tests.workers.runtime.test_runner import checkpoint_path  # noqa: F401 - a fixture
from workers.core.settings import Settings
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime import worker
from workers.runtime.context import WorkerContext, attach, context_of
from workers.runtime.runner import ModelRunner

SEED = "11" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_from_settings_builds_only_what_is_safe_before_a_fork():
    settings = Settings().with_(audit_signing_key=SEED, max_attempts=7, max_batch_size=4)
    ctx = WorkerContext.from_settings(settings)
    assert (ctx.runner, ctx.objects, ctx.verdicts, ctx.fanout) == (None, None, None, None)  # no model, no client
    assert ctx.signer.public_hex and ctx.policy.max_attempts == 7 and ctx.slots.capacity == 2 * 8
    assert ctx.limits.max_bytes == settings.max_body_bytes
    assert WorkerContext.from_settings(Settings()).signer is None  # unsigned records, flagged by `audit verify`


def test_load_builds_the_runner_stores_and_threads_once_however_many_ask(checkpoint_path, clean_redis):  # noqa: F811
    settings = Settings().with_(model=str(checkpoint_path), device="cpu", max_batch_size=2, redis_url=clean_redis)
    ctx = WorkerContext.from_settings(settings)
    with ThreadPoolExecutor(4) as pool:  # the first tasks of a pool that sends no signal, all at once
        loaded = list(pool.map(lambda _: ctx.load(), range(8)))
    try:
        assert all(c is ctx for c in loaded) and isinstance(ctx.runner, ModelRunner)
        runner = ctx.runner
        assert ctx.load().runner is runner  # idempotent
        assert ctx.objects.bucket == settings.s3_bucket and ctx.fanout is not None
        ctx.verdicts.ping()
        assert ctx.alive()
    finally:
        ctx.close()
    assert not ctx.alive()  # the batcher thread is gone: the heartbeat stops refreshing


def test_a_context_built_by_hand_needs_no_settings(clean_redis):
    runner = StandInRunner(max_batch_size=2, max_wait_s=0.01)
    try:
        ctx = WorkerContext(objects=MemoryObjectStore(), verdicts=VerdictStore(redis_client(clean_redis)), runner=runner)
        assert ctx.load() is ctx and ctx.fanout is None  # a message's scans then run in its own thread
        with pytest.raises(RuntimeError, match="runner"):
            WorkerContext(objects=MemoryObjectStore(), verdicts=ctx.verdicts).load()
    finally:
        runner.close()


def test_services_start_at_worker_ready_and_stop_at_shutdown(tmp_path, clean_redis):
    port = free_port()
    settings = Settings().with_(redis_url=clean_redis, reconcile_interval_s=3600, metrics_port=port,
                                heartbeat_file=str(tmp_path / "hb"), shutdown_grace_s=60)
    runner = StandInRunner(max_batch_size=2, max_wait_s=0.01)
    ctx = WorkerContext.from_settings(settings)
    ctx.runner = runner
    consumer = SimpleNamespace(name="the consumer")
    ctx.start_services(app=None, consumer=consumer)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "hb").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "hb").exists() and ctx.reconciler is not None and ctx.consumer is consumer
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200
        ctx.drain()  # SIGTERM: the grace watchdog is armed, once
        watchdog = ctx.watchdog
        ctx.drain()
        assert watchdog is not None and ctx.watchdog is watchdog
    finally:
        ctx.close()
    assert ctx.heartbeat.is_set() and ctx.reconciler._stop.is_set() and watchdog._done.is_set()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize(("pool", "loads_at_worker_init"), [("threads", True), ("prefork", False), ("solo", False)])
def test_worker_init_attaches_the_context_and_a_threads_pool_loads_it_there(monkeypatch, clean_redis, pool,
                                                                            loads_at_worker_init):
    """A prefork or solo pool loads in worker_process_init instead: in the child, after the fork."""
    monkeypatch.setattr(worker.app, "tenderscan_context", None, raising=False)  # restored after the test
    runner = StandInRunner(max_batch_size=2, max_wait_s=0.01)
    prebuilt = WorkerContext(objects=MemoryObjectStore(), verdicts=VerdictStore(redis_client(clean_redis)),
                             runner=runner)  # what a benchmark attaches before the worker starts
    attach(worker.app, prebuilt)
    try:
        worker._start(sender=SimpleNamespace(pool_cls=pool))
        assert context_of(worker.app) is prebuilt and prebuilt._loaded is loads_at_worker_init
        worker._load_after_fork()
        assert prebuilt._loaded
    finally:
        runner.close()
