"""`tenderscan worker`: a Celery worker with tenderscan's defaults.

    threads pool   task threads overlap S3 fetch and decode with the forward pass and fill one
                   in-process batch (workers/runtime/batching.py); prefork would split scans across
                   processes that each batch alone
    concurrency    settings.effective_concurrency (2 x TENDERSCAN_MAX_BATCH_SIZE by default)
    queue          keys.QUEUE
    processes      --processes / TENDERSCAN_WORKER_PROCESSES (default 1; 0 = one per CPU): with more
                   than one, a supervisor (workers/runtime/supervisor.py) runs that many such workers, each
                   its own node name, metrics port and heartbeat file; SIGTERM reaches every one, and
                   one dying stops the rest (the pod restarts)

Equivalent, with one process, to `celery -A workers.app worker -P threads -c N -Q tenderscan.scans`.
"""

from __future__ import annotations

import argparse
import sys

POOLS = ("threads", "solo", "prefork")


def register(subparsers) -> None:
    p = subparsers.add_parser("worker", help="start a Celery worker that batches scans through the model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", "-c", type=int, default=None,
                   help="task threads/processes (default: TENDERSCAN_WORKER_CONCURRENCY or 2 x max batch size)")
    p.add_argument("--pool", "-P", choices=POOLS, default="threads", help="Celery pool (default: threads)")
    p.add_argument("--loglevel", "-l", default=None, help="default: TENDERSCAN_LOG_LEVEL")
    p.add_argument("--queues", "-Q", default=None, help="comma-separated queues (default: the scans queue)")
    p.add_argument("--hostname", "-n", default=None,
                   help="Celery node name (default: celery@HOST; with several processes worker0@HOST, ... "
                        "or this name with the process number after it)")
    p.add_argument("--processes", type=_count, default=None,
                   help="worker processes in this container (default: TENDERSCAN_WORKER_PROCESSES, 1; "
                        "0 = one per CPU)")
    p.set_defaults(func=run)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def worker_argv(args: argparse.Namespace, settings) -> list[str]:
    from workers.core import keys

    concurrency = args.concurrency or (1 if args.pool == "solo" else settings.effective_concurrency)
    argv = ["worker", f"--pool={args.pool}", f"--concurrency={concurrency}",
            f"--queues={args.queues or keys.QUEUE}", f"--loglevel={args.loglevel or settings.log_level}"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    return argv


def child_command(args: argparse.Namespace) -> list[str]:
    """What each supervised process runs: this command with one process and the same options."""
    argv = [sys.executable, "-m", "producer.cli", "worker", "--processes", "1", f"--pool={args.pool}"]
    for option in ("concurrency", "loglevel", "queues"):
        if getattr(args, option):
            argv.append(f"--{option}={getattr(args, option)}")
    return argv


def run(args: argparse.Namespace) -> int:
    from workers.core.settings import Settings
    from workers.runtime.supervisor import resolve_processes, supervise

    settings = Settings.from_env()
    processes = resolve_processes(settings.worker_processes if args.processes is None else args.processes)
    if processes > 1:
        return supervise(child_command(args), processes, settings, hostname=args.hostname)
    from workers.app import app  # one process: exactly the worker it always was

    app.worker_main(worker_argv(args, settings))
    return 0
