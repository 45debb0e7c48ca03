"""Webhooks end to end on real processes. First: Redis, `tenderscan webhook deliver`, and a real HTTP receiver
(tests/integration/webhook_receiver.py) that verifies every signature, fails on purpose for a while,
and is killed and started again mid-run, as is the deliverer. Every event arrives, verified; none is
lost; a duplicate carries the same webhook-id and the same body. Then the product path: a scan through
the API and a real celery worker arrives at the back-end as a verified scan.completed carrying its verdict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from producer.dev.services import free_port, tenderscan_command, wait_for_port
from tests.integration.conftest import wait_until
from workers.core.verdict_store import redis_client
from workers.webhooks.addresses import parse_allow
from workers.webhooks.endpoints import EndpointStore
from workers.webhooks.events import emit
from workers.webhooks.outbox import Outbox

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 40


def start_receiver(port: int, secret: str, out: Path, fail_first: int, logs: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.webhook_receiver", str(port), secret, str(out),
                             str(fail_first)], cwd=ROOT, stdout=open(logs / "receiver.log", "a"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    wait_for_port(port, 15, proc)
    return proc


def start_deliverer(redis_url: str, logs: Path) -> subprocess.Popen:
    env = {**os.environ, "TENDERSCAN_REDIS_URL": redis_url, "TENDERSCAN_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
           "TENDERSCAN_WEBHOOK_BACKOFF_BASE_S": "0.05", "TENDERSCAN_WEBHOOK_BACKOFF_CAP_S": "0.4",
           "TENDERSCAN_WEBHOOK_POLL_S": "0.02", "TENDERSCAN_WEBHOOK_TIMEOUT_S": "1",
           "TENDERSCAN_WEBHOOK_LEASE_S": "3", "TENDERSCAN_WEBHOOK_CONCURRENCY": "4"}
    return subprocess.Popen([*tenderscan_command(), "webhook", "deliver", "--heartbeat-file", str(logs / "hb")],
                            cwd=ROOT, env=env,
                            stdout=open(logs / "deliverer.log", "a"), stderr=subprocess.STDOUT)  # noqa: SIM115


def received(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def test_every_event_is_delivered_through_failures_and_restarts(clean_redis, tmp_path):
    r = redis_client(clean_redis)
    port = free_port()
    ep = EndpointStore(r, parse_allow(["127.0.0.0/8"])).add("acme", f"http://127.0.0.1:{port}/hook")
    secret, out = ep.secrets[0].value, tmp_path / "received.jsonl"
    receiver = start_receiver(port, secret, out, fail_first=15, logs=tmp_path)
    deliverer = start_deliverer(clean_redis, tmp_path)
    procs = [receiver, deliverer]
    try:
        ids = [emit(r, "acme", "scan.completed", {"scan_id": f"{i:032x}", "decision": "genuine"})
               for i in range(EVENTS // 2)]
        assert wait_until(lambda: len(received(out)) >= 10, 30), "the receiver never got a request"
        receiver.kill()  # mid-run: deliveries now fail to connect and are retried
        receiver.wait()
        deliverer.kill()  # and the deliverer dies holding claims: their leases bring them back
        deliverer.wait()
        ids += [emit(r, "acme", "scan.reviewed", {"scan_id": f"{i:032x}"}) for i in range(EVENTS // 2, EVENTS)]
        deliverer = start_deliverer(clean_redis, tmp_path)
        time.sleep(0.5)
        receiver = start_receiver(port, secret, out, fail_first=5, logs=tmp_path)
        procs = [receiver, deliverer]

        def all_answered() -> bool:
            return {g["id"] for g in received(out) if g["answered"] == 200} >= set(ids)

        assert wait_until(all_answered, 60, 0.2), f"missing: {set(ids) - {g['id'] for g in received(out)}}"
        assert wait_until(lambda: Outbox(r).pending() == 0, 10)
        health = subprocess.run([sys.executable, "-m", "workers.health", "--file", str(tmp_path / "hb"),
                                 "--processes", "1", "--max-age", "30"], cwd=ROOT, capture_output=True, text=True)
        assert health.returncode == 0, health.stdout + health.stderr  # the liveness probe sees the loop turn
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    got = received(out)
    assert len(set(ids)) == EVENTS and all(g["verified"] for g in got)  # every request verified
    assert {g["id"] for g in got} == set(ids)  # nothing foreign, nothing missing
    by_id = defaultdict(list)
    for g in got:
        by_id[g["id"]].append(g)
    assert any(len(v) > 1 for v in by_id.values())  # retries happened...
    for tries in by_id.values():  # ...under the same webhook-id, with the same body every time
        assert len({t["body"] for t in tries}) == 1
    types = {json.loads(v[0]["body"])["type"] for v in by_id.values()}
    assert types == {"scan.completed", "scan.reviewed"}
    log = Outbox(r).log("acme", ep.id, limit=1000)
    assert sum(rec["outcome"] == "delivered" for rec in log) >= EVENTS
    assert {rec["outcome"] for rec in log} <= {"delivered", "retrying"}


def test_a_verdict_reaches_the_back_end_as_scan_completed(tmp_path, seaweedfs):
    """The whole path: API -> real celery worker -> verdict -> scan.completed -> deliverer -> receiver."""
    from models.synth import make_scans
    from tests.integration.conftest import start_stack, tenant_clients

    stack = start_stack(tmp_path / "stack", seaweedfs, workers=1)
    receiver = deliverer = None
    try:
        r = redis_client(stack.settings.redis_url)
        port = free_port()
        ep = EndpointStore(r, parse_allow(["127.0.0.0/8"])).add("acme", f"http://127.0.0.1:{port}/hook")
        out = tmp_path / "received.jsonl"
        receiver = start_receiver(port, ep.secrets[0].value, out, fail_first=0, logs=tmp_path)
        deliverer = start_deliverer(stack.settings.redis_url, tmp_path)
        data, _ = make_scans(1, seed=7, counterfeit_ratio=0.5, capture="default")[0]
        with tenant_clients(stack) as clients:
            scan = clients["acme"].submit(data, store_id="s1", terminal_id="t1")
            done = clients["acme"].wait(scan["scan_id"], timeout=240)
            # a tenant without endpoints: its verdict comes as ever, and nothing is sent anywhere for it
            other = clients["globex"].submit(data, store_id="s1", terminal_id="t1")
            assert clients["globex"].wait(other["scan_id"], timeout=240)["status"] == "done"
        assert wait_until(lambda: any(g["answered"] == 200 for g in received(out)), 30), "no scan.completed arrived"
        (got,) = received(out)
        event = json.loads(got["body"])
        assert got["verified"] and got["id"] == f"msg_{scan['scan_id']}_completed"
        assert event["type"] == "scan.completed" and event["data"] == done["verdict"]  # the verdict as stored
    finally:
        for p in (receiver, deliverer):
            if p is not None:
                p.kill()
                p.wait()
        stack.stop()
