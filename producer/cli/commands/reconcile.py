"""`tenderscan reconcile`: re-enqueue accepted scans that have no verdict (S3 is the source of truth).

Runs the sweep once (every intent of the last --days partitions against its audit record), by hand or
from a cron job, and prints what it found; `--outstanding` runs the cheap pass over the scans in flight
instead. Workers run both on their own (workers/reconcile.py): the outstanding pass every
TENDERSCAN_RECONCILE_INTERVAL_S, the sweep every TENDERSCAN_RECONCILE_SWEEP_INTERVAL_S and after a
Redis restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="re-enqueue accepted scans that have no verdict past a deadline",
                       description=__doc__)
    p.add_argument("--stale-after", type=float, default=None, metavar="S",
                   help="seconds without a verdict before a scan is re-enqueued "
                        "(default TENDERSCAN_RECONCILE_STALE_AFTER_S)")
    p.add_argument("--days", type=int, default=None,
                   help="daily partitions to scan, today backwards (default TENDERSCAN_RECONCILE_DAYS)")
    p.add_argument("--outstanding", action="store_true",
                   help="only the scans in flight (Redis), not the S3 sweep: what workers run every interval")
    p.add_argument("--dry-run", action="store_true", help="report what would be re-enqueued, change nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also log an event per scan re-enqueued or repaired (stderr); default: warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from producer.submit import CeleryEnqueuer
    from workers.audit import signing
    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore
    from workers.core.verdict_store import VerdictStore, redis_client
    from workers.runtime.reconcile import queue_head_reader, reconcile_once, reconcile_outstanding

    settings = Settings.from_env()
    if not args.verbose:  # the report below says what the per-scan events would; keep them out of it
        from workers.core.logging import configure_logging

        configure_logging("WARNING", json_output=False, stream="stderr")
    objects = S3ObjectStore.from_settings(settings)
    verdicts = VerdictStore.from_settings(settings)
    enqueue = (lambda msg: None) if args.dry_run else CeleryEnqueuer.from_settings(settings).enqueue
    stale_after_s = args.stale_after if args.stale_after is not None else settings.reconcile_stale_after_s
    queue_head = queue_head_reader(redis_client(settings.effective_broker_url))
    # repaired audit records are signed too; a dry run writes none (and needs no warning)
    signer = None if args.dry_run else signing.signer_from_settings(settings)
    if args.outstanding:
        report = reconcile_outstanding(objects, verdicts, enqueue, stale_after_s=stale_after_s, dry_run=args.dry_run,
                                       queue_head=queue_head, signer=signer)
    else:
        report = reconcile_once(objects, verdicts, enqueue, stale_after_s=stale_after_s,
                                days=args.days or settings.reconcile_days, dry_run=args.dry_run, queue_head=queue_head,
                                signer=signer)
    data = dataclasses.asdict(report)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        verb = "would re-enqueue" if args.dry_run else "re-enqueued"
        seen = f"in flight past stale_after {report.outstanding}" if args.outstanding else \
            f"intents {report.intents}  done {report.done}"
        print(f"{seen}  fresh {report.fresh}  waiting in the queue {report.waiting}  {verb} {len(report.requeued)}  "
              f"states restored {report.states_restored}  audit records repaired {report.audit_repaired}  "
              f"withdrawn {report.withdrawn}  unreadable {report.unreadable}")
    return 0
