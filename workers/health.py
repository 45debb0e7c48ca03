"""Worker liveness for orchestrators: a heartbeat file the worker refreshes, and a checker for probes.

    worker process:  start_heartbeat()   a daemon thread writes the time to TENDERSCAN_HEARTBEAT_FILE every
                                         INTERVAL_S, but only while `alive()` says the batcher runs
    probe:           python -m workers.health --max-age 120     exit 0 if the file is fresh, else 1

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.health",
                                     description="Exit 0 if the worker's heartbeat file is fresh (a liveness probe).")
    parser.add_argument("--max-age", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--file", type=Path, default=None, help="default: TENDERSCAN_HEARTBEAT_FILE")
    args = parser.parse_args(argv)
    if args.file is None:
        from workers.settings import Settings

        args.file = Path(Settings.from_env().heartbeat_file)
    age = age_s(args.file)
    if age is None:
        print(f"no heartbeat at {args.file}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"heartbeat is {age:.0f}s old (> {args.max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
