"""An S3 outage longer than the poison budget, on a real worker (issue #4: outages are not poison).

A private stack (tests/chaos/harness.py: its own redis-server, SeaweedFS, the API) and one real
`celery worker` with MAX_ATTEMPTS 3. Healthy scans (single messages and one multi-scan message from
`POST /v1/scans:batch`) and one genuinely poison scan (its deadline does not parse, so every
delivery raises ValueError) are queued; SeaweedFS is SIGKILLed before the worker starts and stays
down for OUTAGE_S after the worker's first retry, far longer than 3 deliveries' backoff (1 + 2 s,
x0.5..1.5): before the fix every healthy scan ended `error` / internal_error here.

    during the outage   no healthy scan gets a verdict; the poison scan ends error / internal_error
                        after its 3 counted deliveries (its audit record waits for S3)
    after S3 returns    every healthy scan gets a real verdict with attempt 1 (no outage delivery
                        counted), audit records for all, the poison one included
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from models.synth import make_scans
from producer.client import TenderscanClient
from tests.chaos.harness import API_KEY, TENANT, ChaosStack
from tests.integration.conftest import wait_until
from workers.core import clock, keys, schemas
from workers.core.celery_app import make_celery
from workers.core.enums import judged
from workers.core.schemas import ScanMessage, Verdict
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.publish import audit_key

pytestmark = pytest.mark.integration

OUTAGE_S = 25  # after the worker's first retry; the old budget at MAX_ATTEMPTS 3 was 1.5-4.5 s
WORKER_ENV = {"TENDERSCAN_MAX_ATTEMPTS": "3", "TENDERSCAN_MAX_BATCH_SIZE": "4",
              "TENDERSCAN_RECONCILE_STALE_AFTER_S": "6", "TENDERSCAN_RECONCILE_INTERVAL_S": "2"}  # backoff cap 3 s


@pytest.fixture()
def stack(tmp_path):
    stack = ChaosStack.start(tmp_path, workers=0, worker_env=WORKER_ENV)
    yield stack
    stack.stop()


def _poison(stack: ChaosStack, image: bytes) -> ScanMessage:
    """Accepted like any scan (image, intent, state), but its message fails in the worker every time."""
    objects, verdicts = stack.objects(), VerdictStore(redis_client(stack.settings.redis_url))
    sid, now = schemas.new_scan_id(), clock.utcnow()
    key = keys.image_s3_key(TENANT, sid, now, "JPEG")
    objects.put(key, image, "image/jpeg")
    msg = ScanMessage(sid, TENANT, "store-1", "pos-9", key, hashlib.sha256(image).hexdigest(), len(image), now,
                      deadline="not a time")
    objects.put(keys.intent_s3_key(TENANT, sid, now), json.dumps(msg.encode()).encode())
    verdicts.create_scan(msg)
    make_celery(stack.settings).send_task(keys.TASK_NAME, args=[msg.encode()], queue=keys.QUEUE)
    return msg


def _events(worker, name: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in worker.log_path.read_text(errors="replace").splitlines()
                        if line.startswith("{") and f'"{name}"' in line) if e.get("event") == name]


def test_an_s3_outage_longer_than_the_poison_budget_ends_in_real_verdicts(stack):
    r = stack.redis_client()
    images = [data for data, _ in make_scans(10, seed=11)]
    with TenderscanClient(stack.api_url, API_KEY, timeout=30) as client:
        single = [client.submit(data, store_id="store-1", terminal_id="pos-1")["scan_id"] for data in images[:6]]
        multi = [item["scan_id"] for item in client.submit_many(images[6:], store_id="store-1", terminal_id="pos-2")]
    poison = _poison(stack, images[0])
    healthy = single + multi

    stack.kill_s3()
    worker = stack.start_worker(wait=True)
    assert wait_until(lambda: len(_events(worker, "scan_retry")) > 0, 30), worker.log_tail()
    outage_started = time.monotonic()
    assert wait_until(lambda: r.exists(keys.verdict_key(poison.scan_id)), OUTAGE_S), worker.log_tail()
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    early = {s: (v.decision, v.reason, v.detail) for s in healthy
             if (v := Verdict.decode(raw) if (raw := r.get(keys.verdict_key(s))) else None)}
    assert not early, f"healthy scans ended during the outage: {early}"  # before the fix: error / internal_error
    retries = _events(worker, "scan_retry")
    assert sum(e["outage"] for e in retries) >= 2 * 3, "the outage did not outlast 3 deliveries"
    stack.start_s3_again()

    objects = stack.objects()
    ids = healthy + [poison.scan_id]
    assert wait_until(lambda: all(r.exists(keys.verdict_key(s)) for s in ids), 30), worker.log_tail(30)
    verdicts = {s: Verdict.decode(r.get(keys.verdict_key(s))) for s in ids}
    for sid in healthy:
        v = verdicts[sid]
        assert judged(v.decision, v.reason), (v.decision, v.reason, v.detail)
        assert v.attempt == 1  # the deliveries that ended in the outage were refunded
        assert int(r.hget(keys.scan_key(sid), "transient_failures") or 0) >= 2
    p = verdicts[poison.scan_id]
    assert (p.decision, p.reason, p.attempt) == ("error", "internal_error", 3), p
    assert p.detail == "ValueError after 3 attempts"
    assert wait_until(lambda: all(objects.exists(audit_key(v)) for v in verdicts.values()), 20)
    assert worker.alive()
