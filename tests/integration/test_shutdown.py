"""Graceful scale-down on a real worker (issue #4, item 3): SIGTERM mid-batch.

A private stack (tests/chaos/harness.py: its own redis-server, SeaweedFS, API) and real `celery worker`
processes with the reconciler OFF, so only the shutdown path itself can bring scans back. 30 scans are
queued before any worker starts; SeaweedFS is SIGSTOPped so that the worker's first 8 scans (its
concurrency, i.e. everything it prefetched) are stuck in hand when SIGTERM arrives.

    within the grace   S3 comes back 2 s later: the 8 in-hand scans finish after the SIGTERM, the
                       worker exits 0 before its grace ends, the other 22 never left the queue list,
                       nothing is stranded in kombu's unacked set
    grace expires      S3 stays away: at the grace the 8 messages go back onto the list, the worker
                       exits 1 right after; a second worker then judges all 30, each exactly once
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from models.synth import make_scans
from producer.client import TenderscanClient
from tests.chaos.harness import API_KEY, ChaosStack
from tests.integration.conftest import wait_until
from workers.core import keys
from workers.core.enums import judged

pytestmark = pytest.mark.integration

N_SCANS = 30
CONCURRENCY = 8  # MAX_BATCH_SIZE 4 -> 2 x 4 task threads = 8 messages in hand
WORKER_ENV = {"TENDERSCAN_RECONCILE_INTERVAL_S": "0", "TENDERSCAN_MAX_BATCH_SIZE": "4"}
UNACKED = "unacked"  # kombu's Redis transport: delivered, not yet acked (hash; plus "unacked_index")


def _stack(tmp_path, grace_s: int) -> ChaosStack:
    return ChaosStack.start(tmp_path, workers=0, worker_env=dict(WORKER_ENV, TENDERSCAN_SHUTDOWN_GRACE_S=str(grace_s)))


def _submit(stack: ChaosStack) -> list[str]:
    scans = make_scans(N_SCANS, seed=7)
    with TenderscanClient(stack.api_url, API_KEY, timeout=30) as client:
        return [client.submit(data, store_id="store-1", terminal_id="pos-1")["scan_id"] for data, _ in scans]


def _scan_done(worker) -> list[dict]:
    events = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if '"scan_done"' in line:
            event = json.loads(line)
            if event.get("event") == "scan_done":
                events.append(event)
    return events


def _hold_eight(stack: ChaosStack, r) -> object:
    """S3 frozen, one worker started: it takes its 8 messages and blocks on their images."""
    stack.s3.signal(signal.SIGSTOP)
    worker = stack.start_worker(wait=True)
    assert wait_until(lambda: r.llen(keys.QUEUE) == N_SCANS - CONCURRENCY, 30), r.llen(keys.QUEUE)
    assert wait_until(lambda: r.hlen(UNACKED) == CONCURRENCY, 10), r.hlen(UNACKED)
    return worker


@pytest.fixture()
def grace_stack(tmp_path):
    stack = _stack(tmp_path, grace_s=20)
    yield stack
    stack.s3.signal(signal.SIGCONT)
    stack.stop()


@pytest.fixture()
def short_grace_stack(tmp_path):
    stack = _stack(tmp_path, grace_s=3)
    yield stack
    stack.s3.signal(signal.SIGCONT)
    stack.stop()


def test_sigterm_finishes_the_batch_in_hand_and_exits_within_the_grace(grace_stack):
    stack = grace_stack
    r = stack.redis_client()
    ids = _submit(stack)
    worker = _hold_eight(stack, r)
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    time.sleep(2)
    assert worker.alive(), "the worker must wait for the scans in hand, not drop them"
    stack.s3.signal(signal.SIGCONT)
    worker.proc.wait(25)
    took = time.monotonic() - t0
    assert worker.proc.returncode == 0
    assert took < 20, f"exit took {took:.1f}s, grace is 20s"
    done = _scan_done(worker)
    assert len(done) == CONCURRENCY and len({e["scan_id"] for e in done}) == CONCURRENCY
    assert all(judged(e["decision"], e.get("reason")) for e in done)
    assert r.llen(keys.QUEUE) == N_SCANS - CONCURRENCY, "nothing new may be taken after SIGTERM"
    assert r.hlen(UNACKED) == 0, "finished scans must be acked before the exit, not stranded"
    stack.retire(worker)

    successor = stack.start_worker(wait=True)
    assert wait_until(lambda: all(r.exists(keys.verdict_key(s)) for s in ids), 90)
    wait_until(lambda: len(_scan_done(successor)) >= N_SCANS - CONCURRENCY, 10)  # logged after the verdict
    assert {e["scan_id"] for e in _scan_done(successor)}.isdisjoint(e["scan_id"] for e in done)
    assert len(_scan_done(successor)) == N_SCANS - CONCURRENCY  # each scan judged once


def test_when_the_grace_runs_out_the_scans_in_hand_go_back_to_the_queue(short_grace_stack):
    stack = short_grace_stack
    r = stack.redis_client()
    ids = _submit(stack)
    worker = _hold_eight(stack, r)
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.proc.wait(15)  # S3 stays frozen: the batch in hand cannot finish
    took = time.monotonic() - t0
    assert 3 <= took < 6, f"exit took {took:.1f}s with a 3s grace"
    assert worker.proc.returncode == 1
    assert '"shutdown_grace_expired"' in worker.log_path.read_text()
    assert r.llen(keys.QUEUE) == N_SCANS, "the 8 in-hand messages must be back on the list"
    assert r.hlen(UNACKED) == 0
    assert not _scan_done(worker)
    stack.retire(worker)

    stack.s3.signal(signal.SIGCONT)
    successor = stack.start_worker(wait=True)
    assert wait_until(lambda: all(r.exists(keys.verdict_key(s)) for s in ids), 120)
    # scan_done is logged just after the verdict is stored: wait for the log to catch up first
    wait_until(lambda: len(_scan_done(successor)) >= len(ids), 10)
    done = _scan_done(successor)
    assert sorted(e["scan_id"] for e in done) == sorted(ids)  # every scan, exactly once
