"""The Celery tasks: thin adapters from a queue message to `pipeline.process_scan(s)`.

    decode ScanMessage      ContractError -> log, reject the scan if its id is known, ack (nothing to retry)
    bind log context        scan_id, tenant (the runner binds batch_id)
    multi-scan message      waits for slots first (SLOTS: at most 2 x effective_concurrency scans of such
                            messages in flight per process), then pipeline.process_scans
    pipeline.process_scan   all the logic; returns the published verdict
    any other error         retrying.settle: out of budget -> an `error` verdict (internal_error after
                            max_attempts counted deliveries; infrastructure_unavailable after the transient
                            retry window of S3/Redis outages), so a client never polls forever; otherwise
                            retry with capped exponential backoff and jitter (workers/runtime/retrying.py)

The task is acked late (after its verdict is published). Logs carry ids and reason codes only:
never image bytes, S3 credentials or API keys.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog

from workers.core import keys, schemas, telemetry
from workers.core.enums import Decision
from workers.core.errors import ContractError, TransientError, is_outage
from workers.core.schemas import MultiScanMessage, ScanMessage
from workers.runtime import pipeline, retrying
from workers.runtime.batching import ScanSlots
from workers.runtime.worker import app, settings

log = structlog.get_logger("workers.runtime.tasks")

POLICY = retrying.RetryPolicy.from_settings(settings)
MAX_RETRIES = None  # Celery's own limit is off: POLICY decides when a scan ends (and has a backstop)

_deps_lock = threading.Lock()
_deps: pipeline.Deps | None = None
_fanout: ThreadPoolExecutor | None = None  # runs the scans of multi-scan messages (process_scans)
# scans of multi-scan messages in flight in this process, however many scans each message carries: twice
# what the task threads allow single scans (settings.effective_concurrency), so one message's publish
# overlaps the next one's fetch and decode (measured: one message at a time starves the batcher, dozens
# at a time fight over the GIL; docs/PERFORMANCE.md)
SLOTS = ScanSlots(2 * settings.effective_concurrency)


def deps() -> pipeline.Deps:
    """This process's stores and model runner, built on first use (after any fork)."""
    global _deps
    with _deps_lock:
        if _deps is None:
            from workers.runtime import runner as model_runner

            _deps = pipeline.Deps.from_settings(settings, model_runner.get_runner(settings))
        return _deps


def fanout() -> ThreadPoolExecutor:
    """Threads for the scans of multi-scan messages: as many as the scans one worker has in flight."""
    global _fanout
    with _deps_lock:
        if _fanout is None:
            _fanout = ThreadPoolExecutor(settings.effective_concurrency, thread_name_prefix="tenderscan-scan")
        return _fanout


@app.task(name=keys.TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def process_scan(self, raw) -> str | None:
    try:
        msg = ScanMessage.decode(raw)
    except ContractError as exc:
        scan_id = raw.get("scan_id") if isinstance(raw, dict) else None
        known = isinstance(scan_id, str) and schemas.is_scan_id(scan_id)
        log.warning("bad_message", scan_id=scan_id if known else None, detail=exc.detail[:200])
        if known:
            pipeline.reject_bad_message(scan_id, exc.detail[:200], deps())
        return None
    with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
        try:
            return pipeline.process_scan(msg, deps()).decision
        except Exception as exc:  # noqa: BLE001 - every failure is settled: an `error` verdict, or a retry
            if _settle(self, [(msg, exc)]):
                return Decision.ERROR.value
            raise _retry(self, exc, failed=1, of=1) from None


@app.task(name=keys.MULTI_TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def process_scans(self, raw) -> dict[str, int] | None:
    """Several scans in one message (bulk submissions). Each scan has its own outcome; the message is
    acked (late) once every scan has a verdict. A failed scan is settled on its own (retrying.settle:
    its `error` verdict if it is out of budget); if any is left, the whole message is retried and the
    scans that already have a verdict skip straight to it (SET NX made them final)."""
    try:
        msgs, bad = MultiScanMessage.decode_parts(raw)
    except ContractError as exc:
        log.warning("bad_message", detail=exc.detail[:200], multi=True)
        return None
    for item, exc in bad:
        scan_id = item.get("scan_id") if isinstance(item, dict) else None
        log.warning("bad_message", scan_id=scan_id if isinstance(scan_id, str) and schemas.is_scan_id(scan_id)
                    else None, detail=exc.detail[:200], multi=True)
        if isinstance(scan_id, str) and schemas.is_scan_id(scan_id):
            pipeline.reject_bad_message(scan_id, exc.detail[:200], deps())
    taken = SLOTS.acquire(len(msgs))
    try:
        outcomes = pipeline.process_scans(msgs, deps(), fanout())
    except Exception as exc:  # noqa: BLE001 - never let an unexpected error ack the message: retry it
        outcomes = [exc] * len(msgs)
    finally:
        SLOTS.release(taken)
    failed = [(m, o) for m, o in zip(msgs, outcomes, strict=True) if isinstance(o, BaseException)]
    counts: dict[str, int] = {}
    for o in outcomes:
        key = "failed" if isinstance(o, BaseException) else o.decision
        counts[key] = counts.get(key, 0) + 1
    if not failed:
        return counts
    ended = _settle(self, failed)
    if ended:
        counts["failed"] -= len(ended)
        counts[Decision.ERROR.value] = counts.get(Decision.ERROR.value, 0) + len(ended)
    if len(ended) == len(failed):
        return counts
    raise _retry(self, failed[0][1], failed=len(failed) - len(ended), of=len(msgs)) from None


def _settle(task, failed: Sequence[tuple[ScanMessage, BaseException]]) -> list[ScanMessage]:
    """The failed scans that got their terminal `error` verdict now (out of budget); [] when Redis
    cannot tell, so the message is retried."""
    try:
        return retrying.settle(failed, deps(), POLICY, task.request.retries)
    except TransientError as exc:
        log.warning("scan_settle_deferred", error=type(exc).__name__)
        return []


def _retry(task, exc: BaseException, failed: int, of: int):
    """Celery's Retry for this message, after a capped exponential backoff with jitter."""
    retries = task.request.retries
    countdown = POLICY.backoff_s(retries)
    telemetry.observe_error("retry:" + type(exc).__name__)
    transient = isinstance(exc, TransientError)
    log.warning("scan_retry", error=type(exc).__name__, transient=transient, outage=is_outage(exc),
                failed=failed, of=of, retries=retries, countdown_s=round(countdown, 2), exc_info=not transient)
    return task.retry(exc=exc, countdown=countdown)
