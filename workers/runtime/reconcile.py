"""The reconciler: every accepted scan ends with a verdict, whatever Redis or a worker lost.

S3 is the source of truth. The edge writes a scan's intent (its ScanMessage) next to its image
before answering 202; a verdict always leaves an audit record. A scan without a verdict, older than
`stale_after_s` since it was submitted or last re-enqueued, is work that was lost or stuck: Redis
restarted without its data, a message vanished in one of kombu's narrow windows, a worker died
holding it. Two passes find them, one worker at a time:

    outstanding   every interval_s (TENDERSCAN_RECONCILE_INTERVAL_S, 15 s), driven by what is in flight,
                  never by what is stored: the tenants in ts:inflight-tenants, from each tenant's
                  in-flight zset only the entries accepted more than stale_after_s ago (fresh ones are
                  not read), their scan states (pipelined), and the queue's next message. It lists
                  nothing; its cost is the stale in-flight scans plus one S3 GET per scan it re-enqueues.
    sweep         the backstop for what Redis lost together with its in-flight sets: every
                  sweep_interval_s (TENDERSCAN_RECONCILE_SWEEP_INTERVAL_S, 1 h) and at the first pass
                  after Redis restarted or failed over (its run_id changed, or the sweep key is gone).
                  Lists the intents of the last `days` partitions beside each tenant's audit records
                  (both listings are sorted: a merge, nothing held in memory); cost grows with what is
                  stored (1 M audit records: ~3,000 LISTs, docs/RELIABILITY.md "The reconciler's cost").

For each stale scan without a verdict:

    verdict in Redis, no audit record  -> write the audit record (a publish cut in half)
    scan state missing in Redis        -> recreate it from the intent (status queued)
    still queued behind the queue's    -> left alone ("waiting"): the queue's next message was accepted no
      next message                        later than this scan was (re)enqueued, so its message is
                                          probably still on its way; a second copy would double a backlog
    otherwise                          -> re-enqueue the intent's message
    in flight, but no intent in S3     -> dropped from the in-flight set (the edge withdrew it: a 503)

A fresh intent whose scan state Redis lost is given its state back by the sweep (status queued, in
flight again), so the outstanding pass finds it once it is stale: right after a Redis restart, the
scans accepted a moment before are not stale yet.

A re-enqueued scan that was only slow is processed twice; the verdict store's SET NX makes the
second run return the first verdict, so a duplicate is harmless. The poison cap (max_attempts,
counted at dequeue by the pipeline) ends a scan that keeps killing workers with an `error` verdict.
A scan retrying through an outage is not stale: each delivery that ends in one stamps `transient_at`,
and its retry fires within the backoff cap, which Settings keeps below stale_after (workers/runtime/retrying.py).

`reconcile_outstanding` and `reconcile_once` (the sweep; `tenderscan reconcile`) are plain functions;
`Reconciler` runs them periodically inside a worker, holding a short Redis lock so one worker per
interval does the work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from workers.audit.signing import Signer
from workers.core import clock, keys
from workers.core.enums import ScanStatus
from workers.core.errors import ContractError, ObjectNotFound, TenderscanError
from workers.core.schemas import ScanMessage
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore
from workers.runtime.publish import write_audit

log = structlog.get_logger("workers.runtime.reconcile")
CHUNK = 500  # scans looked up per pipelined round trip

QueueHead = Callable[[], datetime | None]  # submitted_at of the queue's next message; None: the queue is empty


@dataclass
class Report:
    intents: int = 0  # sweep: intent records seen in the partitions scanned
    outstanding: int = 0  # outstanding pass: in-flight entries accepted more than stale_after_s ago
    done: int = 0  # with an audit record: nothing to do
    fresh: int = 0  # younger than stale_after_s: left alone
    waiting: int = 0  # stale, but its message is still queued behind the queue's next one: left alone
    audit_repaired: int = 0  # verdict was in Redis only; audit record written
    states_restored: int = 0  # scan state recreated in Redis
    requeued: list[str] = field(default_factory=list)  # scan ids re-enqueued
    withdrawn: int = 0  # in flight without an intent (the edge answered 503): dropped from the in-flight set
    unreadable: int = 0  # intent records that do not decode (logged)


def _partitions(now: datetime, days: int) -> list[str]:
    return [(now - timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days)]


# --- the sweep: every intent of the last `days` partitions ------------------------------------------
def reconcile_once(objects: ObjectStore, verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None],
                   now: datetime | None = None, stale_after_s: float = 60, days: int = 2,
                   dry_run: bool = False, queue_head: QueueHead | None = None, signer: Signer | None = None) -> Report:
    """The sweep: one pass over the last `days` partitions. `dry_run` counts what it would do and writes
    nothing; `signer` signs the audit records it repairs (like every audit record)."""
    now = now or datetime.now(UTC)
    head = queue_head() if queue_head else None
    report = Report()
    pending: list[str] = []  # intent keys without an audit record, looked up CHUNK at a time
    for dt in _partitions(now, days):
        for key, audited in _intents(objects, dt):
            report.intents += 1
            if audited:
                report.done += 1
                continue
            pending.append(key)
            if len(pending) >= CHUNK:
                _sweep_chunk(pending, objects, verdicts, enqueue, now, stale_after_s, head, report, dry_run, signer)
                pending = []
    _sweep_chunk(pending, objects, verdicts, enqueue, now, stale_after_s, head, report, dry_run, signer)
    log.info("reconcile_done", kind="sweep", intents=report.intents, done=report.done, fresh=report.fresh,
             waiting=report.waiting, requeued=len(report.requeued), states_restored=report.states_restored,
             audit_repaired=report.audit_repaired, unreadable=report.unreadable)
    return report


def _intents(objects: ObjectStore, dt: str) -> Iterator[tuple[str, bool]]:
    """(intent key, has an audit record) for each intent of partition `dt`, in listing order.

    Each tenant's intents (`scans/dt=D/tenant=T/{id}.json`) are merged with that tenant's audit records
    (`verdicts/dt=D/tenant=T/{id}.json`, listed when the tenant comes up): both are sorted by scan id
    within a tenant, whichever order the store lists tenants in. Nothing is held but the two cursors.
    """
    tenant_prefix, audit, head = None, iter(()), None
    for key in objects.list(keys.scans_day_prefix(dt)):
        if not key.endswith(".json"):
            continue  # the image itself
        prefix, _, name = key.rpartition("/")
        if prefix != tenant_prefix:
            tenant_prefix = prefix
            audit_prefix = keys.verdicts_day_prefix(dt, prefix.rsplit("tenant=", 1)[-1])
            audit = (k.removeprefix(audit_prefix) for k in objects.list(audit_prefix))
            head = next(audit, None)
        while head is not None and head < name:
            head = next(audit, None)
        yield key, head == name


def _sweep_chunk(intent_keys: list[str], objects: ObjectStore, verdicts: VerdictStore,
                 enqueue: Callable[[ScanMessage], None], now: datetime, stale_after_s: float,
                 head: datetime | None, report: Report, dry_run: bool, signer: Signer | None) -> None:
    if not intent_keys:
        return
    states = verdicts.get_scans([k.rsplit("/", 1)[-1].removesuffix(".json") for k in intent_keys])
    for key, state in zip(intent_keys, states, strict=True):
        state = state or {}
        tracked = "tenant" in state  # a whole state (a delivery after Redis lost it leaves `attempts` only)
        if tracked and _age_s(now, state.get("submitted_at", ""), state) < stale_after_s:
            report.fresh += 1  # tracked in Redis: nothing to read
            continue
        try:
            msg = ScanMessage.decode(objects.get(key).data)
        except (ContractError, ObjectNotFound) as exc:
            report.unreadable += 1
            log.warning("reconcile_unreadable_intent", key=key, error=type(exc).__name__)
            continue
        if not tracked and _age_s(now, msg.submitted_at, state) < stale_after_s:
            report.fresh += 1
            # Redis lost it (a restart): back in flight, so the outstanding pass finds it once stale
            if not dry_run and verdicts.get_verdict(msg.scan_id) is None and verdicts.restore_scan(msg):
                report.states_restored += 1
            continue
        _reconcile_scan(msg, state, objects, verdicts, enqueue, now, stale_after_s, head, report, dry_run,
                        audited=False, signer=signer)


# --- the outstanding pass: what is in flight ------------------------------------------------------
def reconcile_outstanding(objects: ObjectStore, verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None],
                          now: datetime | None = None, stale_after_s: float = 60, dry_run: bool = False,
                          queue_head: QueueHead | None = None, signer: Signer | None = None) -> Report:
    """One pass over the in-flight scans accepted more than stale_after_s ago, tenant by tenant."""
    now = now or datetime.now(UTC)
    head = queue_head() if queue_head else None
    report = Report()
    accepted_before = (now - timedelta(seconds=stale_after_s)).timestamp()
    for tenant in verdicts.in_flight_tenants():
        offset = 0  # an entry dropped below shifts the rest: one may be skipped, till the next pass
        while entries := verdicts.stale_in_flight(tenant, accepted_before, offset, CHUNK):
            offset += len(entries)
            report.outstanding += len(entries)
            states = verdicts.get_scans([sid for sid, _ in entries])
            for (sid, accepted_at), state in zip(entries, states, strict=True):
                _outstanding_scan(tenant, sid, accepted_at, state or {}, objects, verdicts, enqueue, now,
                                  stale_after_s, head, report, dry_run, signer)
    if report.outstanding:
        log.info("reconcile_done", kind="outstanding", outstanding=report.outstanding, fresh=report.fresh,
                 waiting=report.waiting, requeued=len(report.requeued), states_restored=report.states_restored,
                 audit_repaired=report.audit_repaired, withdrawn=report.withdrawn, unreadable=report.unreadable)
    return report


def _outstanding_scan(tenant: str, sid: str, accepted_at: float, state: dict[str, str], objects: ObjectStore,
                      verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None], now: datetime,
                      stale_after_s: float, head: datetime | None, report: Report, dry_run: bool,
                      signer: Signer | None) -> None:
    submitted_at = state.get("submitted_at") or clock.format_time(datetime.fromtimestamp(accepted_at, UTC))
    if _age_s(now, submitted_at, state) < stale_after_s:
        report.fresh += 1  # re-enqueued or retried lately
        return
    if _waiting(state, submitted_at, head):
        report.waiting += 1
        return
    key = keys.intent_s3_key(tenant, sid, submitted_at)
    try:
        msg = ScanMessage.decode(objects.get(key).data)
    except ObjectNotFound:
        report.withdrawn += 1  # the edge answered 503 and withdrew it: nobody waits for this scan
        if not dry_run:
            verdicts.drop_in_flight(tenant, sid)
        return
    except ContractError as exc:
        report.unreadable += 1
        log.warning("reconcile_unreadable_intent", key=key, error=type(exc).__name__)
        return
    _reconcile_scan(msg, state, objects, verdicts, enqueue, now, stale_after_s, head, report, dry_run,
                    audited=None, signer=signer)


# --- one stale scan, either pass ------------------------------------------------------------------
def last_activity(msg: ScanMessage, state: dict[str, str]) -> datetime:
    """When someone last did something about this scan: submitted, re-enqueued here, or a delivery that
    ended in an outage (its retry is scheduled within the backoff cap, which is below stale_after)."""
    return _last_activity(msg.submitted_at, state)


def _last_activity(submitted_at: str, state: dict[str, str]) -> datetime:
    times = [submitted_at or state.get("submitted_at"), state.get("requeued_at"), state.get("transient_at")]
    return max(clock.parse_time(t) for t in times if t)


def _age_s(now: datetime, submitted_at: str, state: dict[str, str]) -> float:
    return (now - _last_activity(submitted_at, state)).total_seconds()


def _waiting(state: dict[str, str], submitted_at: str, head: datetime | None) -> bool:
    """Never delivered (still `queued`) and the queue's next message was accepted no later than this
    scan was last enqueued: its message is most likely behind that one (FIFO), not lost."""
    return (head is not None and state.get("status") == ScanStatus.QUEUED.value
            and head <= _last_activity(submitted_at, state))


def _reconcile_scan(msg: ScanMessage, state: dict[str, str], objects: ObjectStore, verdicts: VerdictStore,
                    enqueue: Callable[[ScanMessage], None], now: datetime, stale_after_s: float,
                    head: datetime | None, report: Report, dry_run: bool, audited: bool | None,
                    signer: Signer | None = None) -> None:
    """A stale scan without an audit record (`audited` False: the sweep listed none; None: not known)."""
    if (now - last_activity(msg, state)).total_seconds() < stale_after_s:
        report.fresh += 1  # possibly a worker between its Redis verdict and its audit record: leave it
        return
    if _waiting(state, msg.submitted_at, head):
        report.waiting += 1
        return
    verdict = verdicts.get_verdict(msg.scan_id)
    if verdict is not None:
        if not dry_run:
            write_audit(verdict, objects, only_if_missing=audited is None, signer=signer)
            verdicts.drop_in_flight(msg.tenant, msg.scan_id)  # a restored state re-added it
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


def queue_head_reader(client, queue: str = keys.QUEUE) -> QueueHead:
    """A QueueHead on the broker's Redis: submitted_at of the message BRPOP hands out next. An unreadable
    queue holds nothing back (the broker's own errors show when re-enqueueing)."""
    import redis

    from workers.core.telemetry import oldest_submitted_at

    def head() -> datetime | None:
        try:
            submitted = oldest_submitted_at(client.lindex(queue, -1))  # kombu LPUSHes and BRPOPs
        except redis.RedisError:
            return None
        return clock.parse_time(submitted) if submitted else None

    return head


class Reconciler:
    """Runs the outstanding pass every `interval_s` in a daemon thread, and the sweep when due; one
    worker per interval (Redis lock)."""

    def __init__(self, objects: ObjectStore, verdicts: VerdictStore, enqueue: Callable[[ScanMessage], None],
                 interval_s: float, stale_after_s: float, days: int, sweep_interval_s: int = 3600,
                 queue_head: QueueHead | None = None, signer: Signer | None = None) -> None:
        self.objects, self.verdicts, self.enqueue, self.signer = objects, verdicts, enqueue, signer
        self.interval_s, self.stale_after_s, self.days = interval_s, stale_after_s, days
        self.sweep_interval_s, self.queue_head = sweep_interval_s, queue_head
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tenderscan-reconciler", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> tuple[Report, Report | None]:
        """The outstanding pass, then the sweep if it is due: (outstanding report, sweep report or None)."""
        outstanding = reconcile_outstanding(self.objects, self.verdicts, self.enqueue,
                                            stale_after_s=self.stale_after_s, queue_head=self.queue_head,
                                            signer=self.signer)
        if self.sweep_interval_s <= 0 or not self.verdicts.claim_sweep(self.verdicts.server_run_id(),
                                                                          self.sweep_interval_s):
            return outstanding, None
        try:
            swept = reconcile_once(self.objects, self.verdicts, self.enqueue, stale_after_s=self.stale_after_s,
                                   days=self.days, queue_head=self.queue_head, signer=self.signer)
        except BaseException:
            self.verdicts.release_sweep()  # due again at the next pass
            raise
        return outstanding, swept

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.verdicts.r.set(keys.RECONCILE_LOCK_KEY, "1", nx=True, ex=max(1, int(self.interval_s))):
                    self.run_once()
            except TenderscanError as exc:  # Redis or S3 away: try again next interval
                log.warning("reconcile_failed", error=type(exc).__name__, detail=str(exc)[:200])
            except Exception as exc:  # noqa: BLE001 - redis errors from the lock call itself
                log.warning("reconcile_failed", error=type(exc).__name__, detail=str(exc)[:200])
