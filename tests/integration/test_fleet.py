"""Operators scale workers at peak: a backlog, one worker, then three, then one scaled down with SIGTERM.

Real processes throughout: the API, three `celery worker` processes, Redis and SeaweedFS. The test
checks the fleet mechanics — every worker takes a share of one queue, the backlog drains, a worker
stopped mid-batch exits gracefully and its scans end with exactly one verdict elsewhere, `celery
inspect` sees the fleet — and records the throughput of one and of three workers. On this 2-core
machine one worker already saturates the CPU (with SeaweedFS and Redis on the same cores), so three
workers cannot drain faster here; docs/OPERATIONS.md records the measured figures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import redis

from models.synth import make_scans
from producer.client import TenderscanClient
from tests.integration.conftest import BIN, TENANT_KEYS, prefill, start_stack, wait_until
from workers.core import keys
from workers.core.schemas import Verdict
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

BACKLOG = 1500  # must outlast three worker start-ups and two rate windows (~37 ms of CPU per scan now)


def rate(r: redis.Redis, seconds: float, timeout: float = 60.0) -> float:
    """Verdicts per second over `seconds`, counted from the first verdict that lands (a worker that just
    logged `ready.` may still be warming up on a loaded machine), or 0 if none lands within `timeout`."""
    start = _done(r)
    wait_until(lambda: _done(r) > start, timeout, interval=0.2)
    before, t0 = _done(r), time.monotonic()
    time.sleep(seconds)
    return (_done(r) - before) / (time.monotonic() - t0)


def _done(r: redis.Redis) -> int:
    return sum(1 for _ in r.scan_iter(match="ts:verdict:*", count=1000))


def flower_workers(stack) -> dict:
    """Start Flower on the fleet's broker and ask its API for the workers it sees."""
    import httpx

    from producer.dev.services import free_port, spawn, wait_for_port

    port = free_port()
    flower = spawn("flower", [str(BIN / "celery"), "-A", "workers.app", "flower", f"--port={port}",
                                       "--address=127.0.0.1"], stack.logs,
                            env=dict(stack.env, FLOWER_UNAUTHENTICATED_API="true"))
    try:
        wait_for_port(port, 60, flower.proc)
        workers: dict = {}
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            resp = httpx.get(f"http://127.0.0.1:{port}/api/workers", params={"refresh": "1"}, timeout=20)
            resp.raise_for_status()
            workers = {name: info for name, info in resp.json().items() if info}
        return workers
    finally:
        flower.stop()


def scans_done_by(worker) -> int:
    return worker.log_path.read_text(errors="replace").count('"event": "scan_done"')


@pytest.mark.timeout(600)  # 95-140 s here; past 300 s when the two cores are shared with much else
def test_a_fleet_shares_one_queue_drains_a_backlog_and_scales_down_without_loss(tmp_path, seaweedfs):
    stack = start_stack(tmp_path, seaweedfs, workers=0)
    try:
        r = redis.Redis.from_url(stack.settings.redis_url)
        client = TenderscanClient(stack.api_url, TENANT_KEYS["acme"], timeout=30)
        assert wait_until(client.ready, 60)
        images = [data for data, _ in make_scans(100, seed=77)]
        ids = prefill(stack, images, BACKLOG)
        assert r.llen(keys.QUEUE) == BACKLOG  # the backlog KEDA's redis trigger would see

        first = stack.start_worker()
        first.wait_for_log(" ready.", 90)
        one_worker = rate(r, 3)
        second, third = stack.start_worker(), stack.start_worker()
        second.wait_for_log(" ready.", 90)
        third.wait_for_log(" ready.", 90)
        three_workers = rate(r, 3)

        assert _done(r) < BACKLOG - 100, "backlog gone before the scale-down: raise BACKLOG"
        second.signal(signal.SIGTERM)  # KEDA / Kubernetes scale-down, with scans in hand and prefetched
        t0 = time.monotonic()
        second.proc.wait(timeout=stack.settings.task_time_limit_s + 30)
        shutdown_s = time.monotonic() - t0
        assert second.proc.returncode == 0, second.log_tail()

        inspect = subprocess.run([str(BIN / "celery"), "-A", "workers.app", "inspect", "active", "--json",
                                  "--timeout", "5"], env=stack.env, capture_output=True, text=True, timeout=60)
        assert inspect.returncode == 0, inspect.stderr
        assert len(json.loads(inspect.stdout)) == 2  # the two workers still up answer
        assert len(flower_workers(stack)) >= 2  # and Flower sees the same fleet

        assert wait_until(lambda: _done(r) >= BACKLOG, 240, interval=0.5), f"{_done(r)}/{BACKLOG} done"
        assert all(scans_done_by(w) > 0 for w in (first, second, third)), "a worker took no share of the queue"

        store = S3ObjectStore.from_settings(stack.settings)
        audit = set(store.list("verdicts/"))
        for scan_id in ids:
            in_redis = Verdict.decode(r.get(keys.verdict_key(scan_id)))
            key = keys.verdict_s3_key("acme", scan_id, in_redis.timestamps.submitted)
            assert key in audit and Verdict.decode(store.get(key).data) == in_redis
        assert len(audit) == BACKLOG
        print(f"\nthroughput: 1 worker {one_worker:.1f} scans/s, 3 workers {three_workers:.1f} scans/s; "
              f"SIGTERM -> exit in {shutdown_s:.1f}s")
        assert three_workers > 0 and one_worker > 0
    finally:
        stack.stop()
