"""`tenderscan worker`: a Celery worker with tenderscan's defaults.

    threads pool   task threads overlap S3 fetch and decode with the forward pass and fill one
                   in-process batch (workers/batching.py); prefork would split scans across
                   processes that each batch alone
    concurrency    settings.effective_concurrency (2 x TENDERSCAN_MAX_BATCH_SIZE by default)
    queue          contract.QUEUE

Equivalent to `celery -A workers.app worker -P threads -c N -Q tenderscan.scans`.
"""

from __future__ import annotations

import argparse

POOLS = ("threads", "solo", "prefork")


def register(subparsers) -> None:
    p = subparsers.add_parser("worker", help="start a Celery worker that batches scans through the model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", "-c", type=int, default=None,
                   help="task threads/processes (default: TENDERSCAN_WORKER_CONCURRENCY or 2 x max batch size)")
    p.add_argument("--pool", "-P", choices=POOLS, default="threads", help="Celery pool (default: threads)")
    p.add_argument("--loglevel", "-l", default=None, help="default: TENDERSCAN_LOG_LEVEL")
    p.add_argument("--queues", "-Q", default=None, help="comma-separated queues (default: the scans queue)")
    p.add_argument("--hostname", "-n", default=None, help="Celery node name (default: celery@HOST)")
    p.set_defaults(func=run)


def worker_argv(args: argparse.Namespace, settings) -> list[str]:
    from workers import contract

    concurrency = args.concurrency or (1 if args.pool == "solo" else settings.effective_concurrency)
    argv = ["worker", f"--pool={args.pool}", f"--concurrency={concurrency}",
            f"--queues={args.queues or contract.QUEUE}", f"--loglevel={args.loglevel or settings.log_level}"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    return argv


def run(args: argparse.Namespace) -> int:
    from workers.app import app, settings

    app.worker_main(worker_argv(args, settings))
    return 0
