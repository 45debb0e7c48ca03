"""`tenderscan worker --processes 2` for real: a supervisor and two real Celery worker processes on a
private redis-server and the session's SeaweedFS (workers/runtime/supervisor.py).

    both work      24 scans queued once both children are ready: every one gets a verdict, each
                   child's own /metrics port counts some of them, and the liveness probe checks
                   both children's heartbeat files
    SIGTERM        to the supervisor only, mid-drain of 150 more: both children finish what they hold
                   and exit 0, so does the supervisor; every scan has a verdict or is back on the
                   queue list, none is held unacked, none was judged twice
    a child dies   SIGKILL to one child: the supervisor stops the other (SIGTERM) and exits 137
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections import Counter

import pytest
import redis

from models.synth import make_scans
from producer.dev.services import free_port_block, spawn, start_redis
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.integration.conftest import BIN, prefill, wait_until
from workers.core import keys
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore

pytestmark = pytest.mark.integration

UNACKED = "unacked"  # kombu's Redis transport: delivered, not yet acked


@pytest.fixture(scope="module")
def services(tmp_path_factory, seaweedfs):
    root = tmp_path_factory.mktemp("supervisor")
    red = start_redis(root / "redis", root / "logs")
    settings = Settings().with_(redis_url=red.extra["url"], s3_endpoint_url=seaweedfs.extra["endpoint"],
                                s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY,
                                s3_bucket=f"ts-sup-{os.getpid()}", models_bucket=f"ts-sup-models-{os.getpid()}")
    for bucket in (settings.s3_bucket, settings.models_bucket):
        S3ObjectStore.from_settings(settings, bucket).ensure_bucket()
    yield settings
    red.stop()


@pytest.fixture()
def supervised(services, tmp_path):
    """Start `tenderscan worker --processes 2`; yields (service, env, metrics ports); stops it all after."""
    metrics_port = free_port_block(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERSCAN_") and k != "OMP_NUM_THREADS"}
    env.update(TENDERSCAN_REDIS_URL=services.redis_url, TENDERSCAN_S3_ENDPOINT_URL=services.s3_endpoint_url,
               TENDERSCAN_S3_ACCESS_KEY=ACCESS_KEY, TENDERSCAN_S3_SECRET_KEY=SECRET_KEY,
               TENDERSCAN_S3_BUCKET=services.s3_bucket, TENDERSCAN_MODELS_BUCKET=services.models_bucket,
               TENDERSCAN_DEVICE="cpu", TENDERSCAN_MAX_BATCH_SIZE="4", TENDERSCAN_MAX_WAIT_MS="20",
               TENDERSCAN_RECONCILE_INTERVAL_S="0",  # only the shutdown path may bring scans back
               TENDERSCAN_METRICS_PORT=str(metrics_port), TENDERSCAN_HEARTBEAT_FILE=str(tmp_path / "hb"),
               TENDERSCAN_WORKER_PROCESSES="2", TENDERSCAN_LOG_JSON="true", PYTHONUNBUFFERED="1")
    redis.Redis.from_url(services.redis_url).flushdb()
    sup = spawn("supervisor", [str(BIN / "tenderscan"), "worker", "--processes", "2"], tmp_path / "logs",
                         env=env)
    try:
        assert wait_until(lambda: _log(sup).count(" ready.") >= 2 or not sup.alive(), 60), sup.log_tail()
        assert sup.alive(), sup.log_tail()
        yield sup, env, (metrics_port, metrics_port + 1)
    finally:
        pids = list(_events(sup, "worker_process_started"))
        sup.stop(30)
        for pid in pids:  # should the supervisor have failed to stop them
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _log(svc) -> str:
    return svc.log_path.read_text(errors="replace")


def _events(svc, name: str) -> dict[int, dict]:
    """The supervisor's `name` events by child pid (children log to the same stream)."""
    out = {}
    for line in _log(svc).splitlines():
        if f'"{name}"' in line and line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                out[event["pid"]] = event
    return out


def _scan_done(svc) -> Counter:
    return Counter(json.loads(line)["scan_id"] for line in _log(svc).splitlines()
                   if '"scan_done"' in line and line.startswith("{"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie awaiting its reaper is not alive
        return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"


def _scans_counted(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^tenderscan_scans_total\{[^}]*\} (\S+)$", text, re.M))


def test_two_processes_share_the_work_and_a_sigterm_drains_both(services, supervised):
    sup, env, ports = supervised
    started = _events(sup, "worker_process_started")
    assert sorted(e["node"] for e in started.values()) == ["worker0@%h", "worker1@%h"]
    assert sorted(e["metrics_port"] for e in started.values()) == list(ports)
    r = redis.Redis.from_url(services.redis_url)
    images = [data for data, _ in make_scans(6, seed=11)]
    stack = types.SimpleNamespace(settings=services)

    first = prefill(stack, images, 24)
    assert wait_until(lambda: all(r.exists(keys.verdict_key(s)) for s in first), 40), sup.log_tail()
    # the counter moves just after the verdict is stored (workers/runtime/pipeline.py), so wait for it too
    assert wait_until(lambda: sum(_scans_counted(port) for port in ports) == 24, 10)
    counted = [_scans_counted(port) for port in ports]
    assert all(c > 0 for c in counted), counted  # both children did work
    probe = subprocess.run([sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert probe.returncode == 0, probe.stderr  # it checked hb.0 and hb.1

    second = prefill(stack, images, 150)
    assert wait_until(lambda: sum(r.exists(keys.verdict_key(s)) for s in second) >= 8, 30)
    sup.proc.send_signal(signal.SIGTERM)  # the supervisor alone, as Kubernetes does to PID 1
    assert sup.proc.wait(40) == 0, sup.log_tail()
    assert not any(_alive(pid) for pid in started)
    exited = _events(sup, "worker_process_exited")
    assert {pid: (e["code"], e["expected"]) for pid, e in exited.items()} == {pid: (0, True) for pid in started}

    done = sum(bool(r.exists(keys.verdict_key(s))) for s in second)
    assert r.hlen(UNACKED) == 0, "a child exited holding messages"
    assert done + r.llen(keys.QUEUE) == len(second), (done, r.llen(keys.QUEUE))  # nothing lost
    assert max(_scan_done(sup).values()) == 1  # nothing judged twice


def test_a_dead_child_stops_the_other_and_fails_the_supervisor(supervised):
    sup, _, _ = supervised
    (victim, survivor) = sorted(_events(sup, "worker_process_started").items(), key=lambda kv: kv[1]["index"])
    t0 = time.monotonic()
    os.kill(victim[0], signal.SIGKILL)
    assert sup.proc.wait(40) == 128 + signal.SIGKILL, sup.log_tail()
    assert time.monotonic() - t0 < 30
    assert not _alive(survivor[0])
    died = _events(sup, "worker_process_died")
    assert list(died) == [victim[0]] and died[victim[0]]["code"] == -signal.SIGKILL
    exited = _events(sup, "worker_process_exited")
    assert exited[survivor[0]]["code"] == 0 and exited[survivor[0]]["expected"] is True
