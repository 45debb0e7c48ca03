"""The reconciler: every accepted scan ends with a verdict, whatever Redis or a worker lost.

S3 is the source of truth. The edge writes a scan's intent (its ScanMessage) next to its image
before answering 202; a verdict always leaves an audit record. An intent without an audit record,
older than `stale_after_s` since it was submitted or last re-enqueued, is work that was lost or
stuck: Redis restarted without its data, a message vanished in one of kombu's narrow windows, a
worker died holding it. For each such scan:

    verdict in Redis, none in S3   -> write the audit record (a publish cut in half)
    scan state missing in Redis    -> recreate it from the intent (status queued)
    otherwise                      -> re-enqueue the intent's message

A re-enqueued scan that was only slow is processed twice; the verdict store's SET NX makes the
second run return the first verdict, so a duplicate is harmless. The poison cap (max_attempts,
counted at dequeue by the pipeline) ends a scan that keeps killing workers with an `error` verdict.
A scan retrying through an outage is not stale: each delivery that ends in one stamps `transient_at`,
and its retry fires within the backoff cap, which Settings keeps below stale_after (workers/runtime/retrying.py).

`reconcile_once` is a plain function (`tenderscan reconcile` calls it); `Reconciler` runs it
periodically inside a worker, holding a short Redis lock so one worker per interval does the work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from workers.audit.signing import Signer
from workers.core import clock, keys
from workers.core.errors import ContractError, ObjectNotFound, TenderscanError
from workers.core.schemas import ScanMessage
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore
from workers.runtime.publish import write_audit

log = structlog.get_logger("workers.runtime.reconcile")


@dataclass
class Report:
    intents: int = 0  # intent records seen in the partitions scanned
    done: int = 0  # with an audit record: nothing to do
    fresh: int = 0  # younger than stale_after_s: left alone
    audit_repaired: int = 0  # verdict was in Redis only; audit record written
    states_restored: int = 0  # scan state recreated in Redis
    requeued: list[str] = field(default_factory=list)  # scan ids re-enqueued
    unreadable: int = 0  # intent records that do not decode (logged)


def _partitions(now: datetime, days: int) -> list[str]:
    return [(now - timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days)]


def reconcile_once(objects: ObjectStore, verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None],
                   now: datetime | None = None, stale_after_s: float = 60, days: int = 2,
                   dry_run: bool = False, signer: Signer | None = None) -> Report:
    """One pass over the last `days` partitions. `dry_run` counts what it would do and writes nothing;
    `signer` signs the audit records it repairs (like every audit record)."""
    now = now or datetime.now(UTC)
    report = Report()
    for dt in _partitions(now, days):
        done = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in objects.list(keys.verdicts_day_prefix(dt))}
        for key in objects.list(keys.scans_day_prefix(dt)):
            if not key.endswith(".json"):
                continue  # the image itself
            report.intents += 1
            scan_id = key.rsplit("/", 1)[-1].removesuffix(".json")
            if scan_id in done:
                report.done += 1
                continue
            try:
                msg = ScanMessage.decode(objects.get(key).data)
            except (ContractError, ObjectNotFound) as exc:
                report.unreadable += 1
                log.warning("reconcile_unreadable_intent", key=key, error=type(exc).__name__)
                continue
            _reconcile_scan(msg, objects, verdicts, enqueue, now, stale_after_s, report, dry_run, signer)
    log.info("reconcile_done", intents=report.intents, done=report.done, fresh=report.fresh,
             requeued=len(report.requeued), states_restored=report.states_restored,
             audit_repaired=report.audit_repaired, unreadable=report.unreadable)
    return report


def last_activity(msg: ScanMessage, state: dict[str, str]) -> datetime:
    """When someone last did something about this scan: submitted, re-enqueued here, or a delivery that
    ended in an outage (its retry is scheduled within the backoff cap, which is below stale_after)."""
    times = [msg.submitted_at, state.get("requeued_at"), state.get("transient_at")]
    return max(clock.parse_time(t) for t in times if t)


def _reconcile_scan(msg: ScanMessage, objects: ObjectStore, verdicts: VerdictStore,
                    enqueue: Callable[[ScanMessage], None], now: datetime, stale_after_s: float,
                    report: Report, dry_run: bool, signer: Signer | None) -> None:
    state = verdicts.get_scan(msg.scan_id) or {}
    if (now - last_activity(msg, state)).total_seconds() < stale_after_s:
        report.fresh += 1  # possibly a worker between its Redis verdict and its audit record: leave it
        return
    verdict = verdicts.get_verdict(msg.scan_id)
    if verdict is not None:
        if not dry_run:
            write_audit(verdict, objects, signer=signer)
        report.audit_repaired += 1
        return
    report.requeued.append(msg.scan_id)
    if dry_run:
        report.states_restored += not state
        return
    if verdicts.restore_scan(msg):
        report.states_restored += 1
    verdicts.mark_requeued(msg.scan_id, clock.utcnow())
    enqueue(msg)
    log.info("reconcile_requeued", scan_id=msg.scan_id, tenant=msg.tenant, attempts=state.get("attempts"))


class Reconciler:
    """Runs reconcile_once every `interval_s` in a daemon thread; one worker per interval (Redis lock)."""

    def __init__(self, objects: ObjectStore, verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None],
                 interval_s: float, stale_after_s: float, days: int, signer: Signer | None = None) -> None:
        self.objects, self.verdicts, self.enqueue, self.signer = objects, verdicts, enqueue, signer
        self.interval_s, self.stale_after_s, self.days = interval_s, stale_after_s, days
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tenderscan-reconciler", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.verdicts.r.set(keys.RECONCILE_LOCK_KEY, "1", nx=True, ex=max(1, int(self.interval_s))):
                    reconcile_once(self.objects, self.verdicts, self.enqueue, stale_after_s=self.stale_after_s,
                                   days=self.days, signer=self.signer)
            except TenderscanError as exc:  # Redis or S3 away: try again next interval
                log.warning("reconcile_failed", error=type(exc).__name__, detail=str(exc)[:200])
            except Exception as exc:  # noqa: BLE001 - redis errors from the lock call itself
                log.warning("reconcile_failed", error=type(exc).__name__, detail=str(exc)[:200])
