"""`tenderscan worker --processes N`: N Celery worker processes in one pod, under one small supervisor.

A worker process's per-scan CPU work (boto3, JPEG decode, the canonical preprocessing, publish) holds
its interpreter lock, so one process uses about one core however many task threads it runs. Where the
forward pass is nearly free (a GPU), a pod needs several processes sharing the GPU to use its cores
(docs/PERFORMANCE.md "On a GPU", docs/OPERATIONS.md). Child i is a plain `tenderscan worker
--processes 1` (it loads its own model; this process never imports torch or Celery) with:

    node name        worker{i}@%h, or --hostname with i after its name (gpu@%h -> gpu0@%h, gpu1@%h ...)
    metrics port     TENDERSCAN_METRICS_PORT + i (0 stays 0: off)
    heartbeat file   TENDERSCAN_HEARTBEAT_FILE + ".{i}" (`python -m workers.health` checks all N)
    OMP_NUM_THREADS  max(1, cpus // N), unless the environment already sets it
    process group    its own, so a terminal's Ctrl-C reaches it once, through the supervisor

What the supervisor does:

    SIGTERM / SIGINT   forwarded to every child (Celery's warm shutdown: finish the batch in hand, hand
                       the prefetched messages back; acks-late loses nothing); then it waits for all of
                       them and exits 0, or non-zero if any child did. A second signal is forwarded too
                       (a second SIGINT is Celery's cold shutdown)
    a child exits      unasked (a crash, an OOM kill, even exit 0), or cannot be started: the others
                       get SIGTERM, and the supervisor waits for them and exits non-zero, so the
                       orchestrator restarts the whole pod instead of keeping a half-dead one alive
    children too slow  a child still running shutdown_grace_s + KILL_MARGIN_S after the first stop
                       signal is SIGKILLed (its unacked messages return by the visibility timeout and
                       the reconciler, docs/RELIABILITY.md); each child's own watchdog normally ends it first
    supervisor killed  Linux sends each child SIGTERM (PR_SET_PDEATHSIG), so none is left orphaned
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from workers.core.logging import configure_logging, get_logger
from workers.runtime.health import heartbeat_files

log = get_logger("workers.runtime.supervisor")

KILL_MARGIN_S = 10.0  # past the children's shutdown grace, before SIGKILL
POLL_S = 0.2  # how often the supervisor looks at its children and at signals received
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cpus() -> int:
    """CPUs this process may run on. Note: a Kubernetes CPU limit is a quota, not an affinity."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_processes(processes: int, cpus: int | None = None) -> int:
    """TENDERSCAN_WORKER_PROCESSES / --processes: 0 means one per available CPU."""
    return processes or cpus or available_cpus()


def node_name(hostname: str | None, index: int) -> str:
    """A distinct Celery node name per child: worker0@%h, or `name{i}@host` from --hostname."""
    name, at, host = (hostname or "worker@%h").partition("@")
    return f"{name}{index}{at}{host}"


@dataclass(frozen=True)
class Child:
    index: int
    node: str
    argv: tuple[str, ...]
    env: Mapping[str, str]  # never logged: it holds the S3 secret and the API key hashes


def plan_children(command: list[str], processes: int, env: Mapping[str, str], *, hostname: str | None,
                  metrics_port: int, heartbeat_file: str, cpus: int) -> list[Child]:
    """What each of `processes` children runs: `command` (a one-process worker) plus its node name,
    and `env` plus its own metrics port, heartbeat file and torch thread count."""
    beats = heartbeat_files(Path(heartbeat_file), processes)
    children = []
    for i in range(processes):
        node = node_name(hostname, i)
        child_env = dict(env, TENDERSCAN_WORKER_PROCESSES="1", TENDERSCAN_HEARTBEAT_FILE=str(beats[i]),
                         TENDERSCAN_METRICS_PORT=str(metrics_port + i if metrics_port else 0))
        child_env.setdefault("OMP_NUM_THREADS", str(max(1, cpus // processes)))
        children.append(Child(i, node, (*command, f"--hostname={node}"), child_env))
    return children


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child, before exec
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(child: Child) -> subprocess.Popen:
    """Start one child: stdout and stderr are the supervisor's (one log stream per pod)."""
    return subprocess.Popen(list(child.argv), env=dict(child.env), process_group=0,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


class Supervisor:
    """Start the children, forward stop signals, stop them all when one dies; run() -> exit status."""

    def __init__(self, children: list[Child], kill_after_s: float,
                 spawn: Callable[[Child], subprocess.Popen] = spawn,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = POLL_S) -> None:
        self.children = children
        self.kill_after_s = kill_after_s
        self._spawn = spawn
        self._clock = clock
        self._poll_s = poll_s
        self.procs: dict[int, subprocess.Popen] = {}
        self.codes: dict[int, int] = {}  # index -> return code, once exited
        self.died: int | None = None  # the child whose unasked exit stopped the rest
        self.spawn_failed = False
        self._received: list[int] = []  # signals, appended by the handler (which must not log)
        self._stopping_since: float | None = None
        self._killed = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for child in self.children:
                if self._received or self._stopping_since is not None:
                    break  # told to stop while starting, or a start failed: start no more
                self._start(child)
            while len(self.codes) < len(self.procs):
                self.step()
                if len(self.codes) < len(self.procs):
                    time.sleep(self._poll_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = self.status()
        (log.info if status == 0 else log.error)("worker_processes_exited", code=status, codes={i: c for i, c in sorted(self.codes.items())})
        return status

    def step(self) -> None:
        """One look: forward signals received, reap exited children, SIGKILL stragglers."""
        while self._received:
            sig = self._received.pop(0)
            log.info("worker_processes_stopping", signal=signal.Signals(sig).name)
            self._signal_all(sig)
        for index, proc in self.procs.items():
            if index in self.codes or (code := proc.poll()) is None:
                continue
            self.codes[index] = code
            expected = self._stopping_since is not None
            (log.info if expected and code == 0 else log.warning)(
                "worker_process_exited", index=index, pid=proc.pid, code=code, expected=expected)
            if not expected:
                self.died = index
                log.error("worker_process_died", index=index, pid=proc.pid, code=code, action="stopping the others")
                self._signal_all(signal.SIGTERM)
        if (self._stopping_since is not None and not self._killed
                and self._clock() - self._stopping_since > self.kill_after_s):
            self._killed = True
            for index, proc in self.procs.items():
                if index not in self.codes and proc.poll() is None:
                    log.error("worker_process_killed", index=index, pid=proc.pid, after_s=self.kill_after_s)
                    proc.kill()

    def status(self) -> int:
        """0 when every child exited 0 after being asked to; else the first failure's code (at least 1)."""
        if self.died is not None:
            return exit_status(self.codes[self.died]) or 1
        if self.spawn_failed:
            return 1
        failed = [exit_status(code) for _, code in sorted(self.codes.items()) if code != 0]
        return failed[0] if failed else 0

    def _start(self, child: Child) -> None:
        try:
            proc = self._spawn(child)
        except OSError as exc:
            log.error("worker_process_spawn_failed", index=child.index, error=type(exc).__name__,
                      detail=str(exc)[:200], action="stopping the others")
            self.spawn_failed = True
            self._signal_all(signal.SIGTERM)
            return
        self.procs[child.index] = proc
        log.info("worker_process_started", index=child.index, pid=proc.pid, node=child.node,
                 metrics_port=int(child.env.get("TENDERSCAN_METRICS_PORT", 0)),
                 omp_num_threads=child.env.get("OMP_NUM_THREADS"))

    def _on_signal(self, signum: int, _frame) -> None:
        self._received.append(signum)  # no logging here: a handler may interrupt a write to stdout

    def _signal_all(self, sig: int) -> None:
        if self._stopping_since is None:
            self._stopping_since = self._clock()
        for index, proc in self.procs.items():
            if index not in self.codes:
                proc.send_signal(sig)  # Popen skips a child already reaped


def supervise(command: list[str], processes: int, settings, hostname: str | None = None,
              env: Mapping[str, str] | None = None) -> int:
    """`tenderscan worker` with more than one process: plan, start and watch the children."""
    configure_logging(settings.log_level, settings.log_json)
    cpus = available_cpus()
    if processes != resolve_processes(settings.worker_processes, cpus):
        log.warning("worker_processes_differ_from_setting", processes=processes,
                    setting=settings.worker_processes,
                    detail="python -m workers.health checks TENDERSCAN_WORKER_PROCESSES heartbeats; set it instead")
    children = plan_children(command, processes, os.environ if env is None else env, hostname=hostname,
                             metrics_port=settings.metrics_port, heartbeat_file=settings.heartbeat_file, cpus=cpus)
    log.info("worker_processes_starting", processes=processes, cpus=cpus)
    return Supervisor(children, kill_after_s=settings.shutdown_grace_s + KILL_MARGIN_S).run()
