"""workers/runtime/supervisor.py: what each child runs, and what the supervisor does on a stop signal or a death.

The process-level behaviour (real children, real signals) is in tests/integration/test_supervisor.py;
here the children are fakes, so every branch runs in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from producer.cli.commands import worker as worker_command
from workers.core.settings import Settings
from workers.runtime import supervisor

ENV = {"PATH": "/usr/bin", "TENDERSCAN_S3_SECRET_KEY": "s3cr3t", "TENDERSCAN_METRICS_PORT": "9100"}


def plan(processes=3, env=ENV, hostname=None, metrics_port=9100, cpus=8):
    return supervisor.plan_children(["tenderscan-worker"], processes, env, hostname=hostname,
                                    metrics_port=metrics_port, heartbeat_file="/tmp/hb", cpus=cpus)


def test_each_child_gets_its_own_node_port_heartbeat_and_a_share_of_the_cpus():
    children = plan()
    assert [c.node for c in children] == ["worker0@%h", "worker1@%h", "worker2@%h"]
    assert [c.argv for c in children] == [("tenderscan-worker", f"--hostname=worker{i}@%h") for i in range(3)]
    assert [c.env["TENDERSCAN_METRICS_PORT"] for c in children] == ["9100", "9101", "9102"]
    assert [c.env["TENDERSCAN_HEARTBEAT_FILE"] for c in children] == ["/tmp/hb.0", "/tmp/hb.1", "/tmp/hb.2"]
    assert {c.env["OMP_NUM_THREADS"] for c in children} == {"2"}  # 8 cpus // 3
    assert {c.env["TENDERSCAN_WORKER_PROCESSES"] for c in children} == {"1"}
    assert all(c.env["TENDERSCAN_S3_SECRET_KEY"] == "s3cr3t" and c.env["PATH"] == "/usr/bin" for c in children)
    assert ENV == {"PATH": "/usr/bin", "TENDERSCAN_S3_SECRET_KEY": "s3cr3t", "TENDERSCAN_METRICS_PORT": "9100"}


def test_metrics_off_stays_off_and_a_set_omp_is_kept_and_threads_never_drop_below_one():
    children = plan(processes=16, env=dict(ENV, OMP_NUM_THREADS="3"), metrics_port=0, cpus=4)
    assert {c.env["TENDERSCAN_METRICS_PORT"] for c in children} == {"0"}
    assert {c.env["OMP_NUM_THREADS"] for c in children} == {"3"}
    assert {c.env["OMP_NUM_THREADS"] for c in plan(processes=16, cpus=4)} == {"1"}


@pytest.mark.parametrize(("hostname", "expected"), [
    (None, ["worker0@%h", "worker1@%h"]),
    ("gpu@%h", ["gpu0@%h", "gpu1@%h"]),
    ("gpu-@node-a", ["gpu-0@node-a", "gpu-1@node-a"]),
    ("plain", ["plain0", "plain1"]),
])
def test_node_names_are_distinct_and_derived_from_hostname(hostname, expected):
    assert [supervisor.node_name(hostname, i) for i in range(2)] == expected


def test_zero_processes_means_one_per_available_cpu():
    assert supervisor.resolve_processes(0, cpus=6) == 6
    assert supervisor.resolve_processes(3, cpus=6) == 3
    assert supervisor.resolve_processes(0) == len(os.sched_getaffinity(0))


def parse(*argv: str) -> argparse.Namespace:
    from producer.cli import build_parser

    return build_parser().parse_args(["worker", *argv])


def test_the_child_command_is_a_one_process_worker_with_the_same_options():
    argv = worker_command.child_command(parse("--processes", "4", "-c", "16", "-Q", "q1", "-l", "DEBUG"))
    assert argv == [sys.executable, "-m", "producer.cli", "worker", "--processes", "1", "--pool=threads",
                    "--concurrency=16", "--loglevel=DEBUG", "--queues=q1"]
    assert parse(*argv[4:]).processes == 1  # the child parses it back as one process


def test_processes_defaults_to_the_setting_and_refuses_negatives(capsys):
    assert parse().processes is None
    assert parse("--processes", "0").processes == 0
    with pytest.raises(SystemExit):
        parse("--processes", "-1")
    assert Settings.from_env({}).worker_processes == 1
    assert Settings.from_env({"TENDERSCAN_WORKER_PROCESSES": "0"}).worker_processes == 0


def test_one_process_runs_the_celery_worker_in_place_and_never_the_supervisor(monkeypatch):
    import workers.app

    called = {}
    monkeypatch.setattr(workers.app.app, "worker_main", lambda argv: called.setdefault("argv", argv))
    monkeypatch.setattr(supervisor, "supervise", lambda *a, **k: pytest.fail("supervisor started"))
    monkeypatch.delenv("TENDERSCAN_WORKER_PROCESSES", raising=False)
    assert worker_command.run(parse("-n", "solo@%h")) == 0
    assert "--hostname=solo@%h" in called["argv"] and "--pool=threads" in called["argv"]


def test_more_than_one_process_goes_to_the_supervisor(monkeypatch):
    seen = {}
    monkeypatch.setattr(supervisor, "supervise", lambda command, n, settings, hostname=None: seen.update(
        command=command, n=n, hostname=hostname) or 0)
    assert worker_command.run(parse("--processes", "2", "-n", "gpu@%h")) == 0
    assert seen["n"] == 2 and seen["hostname"] == "gpu@%h" and seen["command"][4:6] == ["--processes", "1"]


# --- the supervisor loop, on fake children ---------------------------------------------------------
class FakeProc:
    _pids = iter(range(1000, 2000))

    def __init__(self, exits_on: dict[int, int] | None = None) -> None:
        self.pid = next(self._pids)
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.exits_on = exits_on if exits_on is not None else {signal.SIGTERM: 0, signal.SIGINT: 1}

    def poll(self):
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.signals.append(sig)
            if sig in self.exits_on:
                self.returncode = self.exits_on[sig]

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.returncode = -signal.SIGKILL


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(procs: list[FakeProc], kill_after_s: float = 35.0):
    clock = Clock()
    sup = supervisor.Supervisor(plan(processes=len(procs)), kill_after_s, spawn=lambda child: procs[child.index],
                                clock=clock, poll_s=0)
    for child in sup.children:
        sup._start(child)
    return sup, clock


def test_a_stop_signal_is_forwarded_to_every_child_and_a_clean_drain_exits_0():
    procs = [FakeProc(), FakeProc()]
    sup, _ = make(procs)
    sup._on_signal(signal.SIGTERM, None)
    sup.step()
    sup.step()
    assert [p.signals for p in procs] == [[signal.SIGTERM], [signal.SIGTERM]]
    assert sup.codes == {0: 0, 1: 0} and sup.status() == 0


def test_a_child_failing_its_drain_makes_the_supervisor_exit_non_zero():
    procs = [FakeProc(), FakeProc(exits_on={signal.SIGTERM: 1})]  # its grace ran out (workers/runtime/shutdown.py)
    sup, _ = make(procs)
    sup._on_signal(signal.SIGTERM, None)
    sup.step()
    sup.step()
    assert sup.status() == 1


def test_a_dead_child_stops_the_others_and_the_supervisor_exits_with_its_code():
    procs = [FakeProc(), FakeProc(), FakeProc()]
    sup, _ = make(procs)
    sup.step()
    assert not any(p.signals for p in procs)
    procs[1].returncode = -signal.SIGKILL  # the OOM killer, say
    sup.step()
    assert procs[0].signals == [signal.SIGTERM] and procs[2].signals == [signal.SIGTERM]
    assert procs[1].signals == []
    sup.step()
    assert sup.died == 1 and len(sup.codes) == 3
    assert sup.status() == 128 + signal.SIGKILL


def test_a_child_exiting_0_unasked_still_fails_the_pod():
    procs = [FakeProc(), FakeProc()]
    sup, _ = make(procs)
    procs[0].returncode = 0
    sup.step()
    sup.step()
    assert procs[1].signals == [signal.SIGTERM] and sup.status() == 1


def test_children_that_outlive_the_grace_are_killed():
    procs = [FakeProc(exits_on={}), FakeProc()]  # the first ignores SIGTERM
    sup, clock = make(procs, kill_after_s=35)
    sup._on_signal(signal.SIGTERM, None)
    sup.step()
    clock.now = 30
    sup.step()
    assert procs[0].returncode is None
    clock.now = 36
    sup.step()
    assert procs[0].signals == [signal.SIGTERM, signal.SIGKILL]
    sup.step()
    assert sup.status() == 128 + signal.SIGKILL


def test_a_second_sigint_is_forwarded_too():
    procs = [FakeProc(exits_on={})]
    sup, _ = make(procs)
    sup._on_signal(signal.SIGINT, None)
    sup._on_signal(signal.SIGINT, None)
    sup.step()
    assert procs[0].signals == [signal.SIGINT, signal.SIGINT]


def test_run_restores_the_signal_handlers_and_starts_no_child_after_a_stop(monkeypatch):
    procs = [FakeProc(), FakeProc()]
    sup = supervisor.Supervisor(plan(processes=2), 35, spawn=lambda child: procs[child.index], poll_s=0)

    def spawn_then_signal(child):
        sup._on_signal(signal.SIGTERM, None)  # SIGTERM arrives while the first child starts
        return procs[child.index]

    sup._spawn = spawn_then_signal
    before = signal.getsignal(signal.SIGTERM)
    assert sup.run() == 0
    assert list(sup.procs) == [0] and procs[0].signals == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie not yet reaped by init counts as gone
        return fh.read().split(")")[-1].split()[0] == "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_spawned_child_has_its_own_process_group_and_dies_with_the_supervisor():
    code = ("import os, sys, time; from workers.runtime import supervisor\n"
            "child = supervisor.Child(0, 'w0', (sys.executable, '-c', 'import time; time.sleep(60)'), dict(os.environ))\n"
            "print(supervisor.spawn(child).pid, flush=True); time.sleep(60)")
    middle = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(middle.stdout.readline())
    try:
        assert os.getpgid(pid) == pid != os.getpgid(0)
        middle.kill()  # the supervisor dies without forwarding anything
        middle.wait(5)
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), "the child outlived its supervisor"
    finally:
        middle.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_supervisor_imports_neither_torch_nor_celery():
    """It must stay small, and never touch CUDA: each child loads its own model (STYLE.md)."""
    code = ("import sys; from producer.cli.commands import worker; from workers.runtime import supervisor\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'celery', 'kombu'))\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_child_that_cannot_be_started_stops_the_ones_already_running():
    procs = [FakeProc()]

    def spawn(child):
        if child.index == 1:
            raise OSError("no such interpreter")
        return procs[child.index]

    sup = supervisor.Supervisor(plan(processes=3), 35, spawn=spawn, poll_s=0)
    assert sup.run() == 1
    assert list(sup.procs) == [0] and procs[0].signals == [signal.SIGTERM]
