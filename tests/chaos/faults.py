"""The faults of issue #4, each a function of a running ChaosStack (called mid-load by harness.Load).

    worker_sigkill                 SIGKILL a worker while it holds a batch; start a replacement
    worker_sigterm                 scale-down: SIGTERM one of two workers mid-batch (it must exit in its grace)
    redis_restart_aof              kill -9 redis-server (appendonly yes, everysec) and start it on its data
    redis_restart_no_persistence   kill -9 redis-server with no persistence: every key is gone
    s3_restart                     kill -9 SeaweedFS and start it again on the same ports and data dir
    redis_unreachable              SIGSTOP redis-server for REDIS_PAUSE_S, then SIGCONT
    hostile_inputs                 no outage: every 10th scan is a file of the hostile corpus

Each FAULTS entry says how many workers the stack starts with, whether Redis keeps an AOF, and the
fault function. The function returns when the fault is over (fault end = recovery-time origin).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.chaos.harness import ChaosStack

REDIS_DOWN_S = 3.0  # how long Redis stays dead before it is restarted
S3_DOWN_S = 3.0  # how long SeaweedFS stays dead before it is restarted
REDIS_PAUSE_S = 5.0  # how long a SIGSTOPped Redis stays unreachable


def _wait_busy(stack: ChaosStack, worker, timeout: float = 30.0) -> None:
    """Until the worker logged a batch after this call (so it holds work), or timeout."""
    path = worker.log_path
    start = path.stat().st_size if path.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            f.seek(start)
            if b'"scan_done"' in f.read():
                return
        time.sleep(0.05)


def worker_sigkill(stack: ChaosStack) -> None:
    victim = stack.workers[0]
    _wait_busy(stack, victim)
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    stack.retire(victim)
    stack.start_worker(wait=True)  # the replacement (as a Deployment would start one)


def worker_sigterm(stack: ChaosStack) -> None:
    victim = stack.workers[0]
    _wait_busy(stack, victim)
    grace = float(stack.env.get("TENDERSCAN_SHUTDOWN_GRACE_S", "30"))
    t0 = time.monotonic()
    victim.signal(signal.SIGTERM)
    try:
        victim.proc.wait(grace + 5)
    except Exception as exc:
        raise RuntimeError(f"worker did not exit within its grace period ({grace:.0f}s + 5s)") from exc
    took = time.monotonic() - t0
    stack.retire(victim)
    if victim.proc.returncode not in (0, 1):
        raise RuntimeError(f"worker exited with {victim.proc.returncode} after SIGTERM")
    if took > grace:
        raise RuntimeError(f"worker took {took:.1f}s to exit, more than its grace period {grace:.0f}s")


def redis_restart(stack: ChaosStack) -> None:
    stack.kill_redis()
    time.sleep(REDIS_DOWN_S)
    stack.start_redis_again()


def s3_restart(stack: ChaosStack) -> None:
    stack.kill_s3()
    time.sleep(S3_DOWN_S)
    stack.start_s3_again()


def redis_unreachable(stack: ChaosStack) -> None:
    stack.redis.signal(signal.SIGSTOP)
    try:
        time.sleep(REDIS_PAUSE_S)
    finally:
        stack.redis.signal(signal.SIGCONT)


@dataclass(frozen=True)
class Fault:
    name: str
    run: Callable[[ChaosStack], None] | None
    workers: int = 1
    appendonly: bool = True
    hostile_every: int = 0  # every k-th scan is a hostile corpus file
    note: str = ""


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("worker_sigkill", worker_sigkill, workers=1, note="SIGKILL mid-batch, replacement started"),
    Fault("worker_sigterm", worker_sigterm, workers=2, note="SIGTERM one of two workers mid-batch"),
    Fault("redis_restart_aof", redis_restart, appendonly=True, note="kill -9, AOF everysec, restart"),
    Fault("redis_restart_no_persistence", redis_restart, appendonly=False, note="kill -9, no persistence: all keys lost"),
    Fault("s3_restart", s3_restart, note="kill -9 SeaweedFS, restart on same ports and data"),
    Fault("redis_unreachable", redis_unreachable, note=f"SIGSTOP redis-server {REDIS_PAUSE_S:.0f}s, then SIGCONT"),
    Fault("hostile_inputs", None, hostile_every=10, note="every 10th scan from tests/hostile/files"),
)}
