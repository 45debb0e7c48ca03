"""Worker liveness for orchestrators: a heartbeat file the worker refreshes, and a checker for probes.

    worker process:  start_heartbeat()   a daemon thread writes the time to TENDERSCAN_HEARTBEAT_FILE every
                                         INTERVAL_S, but only while `alive()` says the batcher runs
    probe:           python -m workers.health --max-age 120     exit 0 if the file is fresh, else 1

With TENDERSCAN_WORKER_PROCESSES = N > 1 (`tenderscan worker` supervising N processes,
workers/runtime/supervisor.py) child i writes `<TENDERSCAN_HEARTBEAT_FILE>.<i>`, and the probe checks all N
files: one dead or hung child fails it. The probe learns N from the setting (or --processes), not
from the worker's command line, so set the count in the environment where probes run.

A worker whose batcher thread died (or whose process hangs) stops refreshing the file; Kubernetes'
livenessProbe then restarts the pod. A broker outage does NOT fail the probe: the worker reconnects on
its own, and restarting it would only add a model load to the outage.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

INTERVAL_S = 10.0


def heartbeat_files(path: Path, processes: int) -> list[Path]:
    """The files a worker of `processes` processes keeps fresh: `path` itself for one, else `path.<i>`."""
    return [path] if processes == 1 else [path.with_name(f"{path.name}.{i}") for i in range(processes)]


def beat(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")  # not with_suffix: `hb.0` and `hb.1` must not share `hb.tmp`
    tmp.write_text(f"{time.time():.3f}\n")
    tmp.replace(path)  # atomic: a probe never reads half a file


def age_s(path: Path, now: float | None = None) -> float | None:
    try:
        stamp = float(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return (now or time.time()) - stamp


def start_heartbeat(alive: Callable[[], bool], path: Path, interval_s: float = INTERVAL_S) -> threading.Event:
    """Refresh `path` every interval while `alive()`; returns an Event that stops the thread."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            if alive():
                beat(path)
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name="tenderscan-heartbeat", daemon=True).start()
    return stop


def stale(path: Path, max_age: float) -> str | None:
    """Why `path` fails the probe, or None when it is fresh."""
    age = age_s(path)
    if age is None:
        return f"no heartbeat at {path}"
    if age > max_age:
        return f"heartbeat {path} is {age:.0f}s old (> {max_age:.0f}s)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.health",
                                     description="Exit 0 if every worker process's heartbeat file is fresh "
                                                 "(a liveness probe).")
    parser.add_argument("--max-age", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--file", type=Path, default=None, help="default: TENDERSCAN_HEARTBEAT_FILE")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes to check (default: TENDERSCAN_WORKER_PROCESSES; 0 = one per CPU)")
    args = parser.parse_args(argv)
    if args.file is None or args.processes is None:
        from workers.core.settings import Settings

        settings = Settings.from_env()
        args.file = args.file or Path(settings.heartbeat_file)
        args.processes = settings.worker_processes if args.processes is None else args.processes
    from workers.runtime.supervisor import resolve_processes

    problems = [p for p in (stale(f, args.max_age) for f in heartbeat_files(args.file, resolve_processes(args.processes)))
                if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
