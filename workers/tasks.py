"""The one Celery task: a thin adapter from a queue message to `pipeline.process_scan`.

    decode ScanMessage      ContractError -> log, reject the scan if its id is known, ack (nothing to retry)
    bind log context        scan_id, tenant (the runner binds batch_id)
    pipeline.process_scan   all the logic; returns the published verdict
    any other error         retry with exponential backoff and jitter; after settings.max_attempts
                            deliveries the scan gets an `error` verdict (internal_error), so a client
                            never polls forever

The task is acked late (after its verdict is published). Logs carry ids and reason codes only:
never image bytes, S3 credentials or API keys.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import structlog

from workers import contract, metrics, pipeline
from workers.app import app, settings
from workers.contract import ScanMessage
from workers.errors import ContractError, TransientError

log = structlog.get_logger("workers.tasks")

MAX_RETRIES = settings.max_attempts - 1  # retries after the first delivery
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0

_deps_lock = threading.Lock()
_deps: pipeline.Deps | None = None
_fanout: ThreadPoolExecutor | None = None  # runs the scans of multi-scan messages (process_scans)


def backoff_s(retries: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full-range jitter: base * 2**retries, capped, times 0.5..1.5."""
    jitter = (rng or random).random() + 0.5
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** retries) * jitter


def deps() -> pipeline.Deps:
    """This process's stores and model runner, built on first use (after any fork)."""
    global _deps
    with _deps_lock:
        if _deps is None:
            from workers import inference

            _deps = pipeline.Deps.from_settings(settings, inference.get_runner(settings))
        return _deps


def fanout() -> ThreadPoolExecutor:
    """Threads for the scans of multi-scan messages: as many as the scans one worker has in flight."""
    global _fanout
    with _deps_lock:
        if _fanout is None:
            _fanout = ThreadPoolExecutor(settings.effective_concurrency, thread_name_prefix="tenderscan-scan")
        return _fanout


@app.task(name=contract.TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def process_scan(self, raw) -> str | None:
    try:
        msg = ScanMessage.decode(raw)
    except ContractError as exc:
        scan_id = raw.get("scan_id") if isinstance(raw, dict) else None
        known = isinstance(scan_id, str) and contract.is_scan_id(scan_id)
        log.warning("bad_message", scan_id=scan_id if known else None, detail=exc.detail[:200])
        if known:
            pipeline.reject_bad_message(scan_id, exc.detail[:200], deps())
        return None
    with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
        try:
            return pipeline.process_scan(msg, deps()).decision
        except Exception as exc:
            retries = self.request.retries
            transient = isinstance(exc, TransientError)
            if retries >= self.max_retries:
                log.error("scan_retries_exhausted", error=type(exc).__name__, retries=retries)
                pipeline.fail_scan(msg, deps(), f"{type(exc).__name__} after {retries + 1} attempts")
                return contract.Decision.ERROR.value
            countdown = backoff_s(retries)
            metrics.observe_error("retry:" + type(exc).__name__)
            log.warning("scan_retry", error=type(exc).__name__, transient=transient, retries=retries,
                        countdown_s=round(countdown, 2), exc_info=not transient)
            raise self.retry(exc=exc, countdown=countdown) from None


@app.task(name=contract.MULTI_TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def process_scans(self, raw) -> dict[str, int] | None:
    """Several scans in one message (bulk submissions). Each scan has its own outcome; the message is
    acked (late) once every scan has a verdict. If any scan failed transiently the whole message is
    retried: the scans that already have a verdict skip straight to it (SET NX made them final)."""
    try:
        msgs, bad = contract.MultiScanMessage.decode_parts(raw)
    except ContractError as exc:
        log.warning("bad_message", detail=exc.detail[:200], multi=True)
        return None
    for item, exc in bad:
        scan_id = item.get("scan_id") if isinstance(item, dict) else None
        log.warning("bad_message", scan_id=scan_id if isinstance(scan_id, str) and contract.is_scan_id(scan_id)
                    else None, detail=exc.detail[:200], multi=True)
        if isinstance(scan_id, str) and contract.is_scan_id(scan_id):
            pipeline.reject_bad_message(scan_id, exc.detail[:200], deps())
    try:
        outcomes = pipeline.process_scans(msgs, deps(), fanout())
    except Exception as exc:  # noqa: BLE001 - never let an unexpected error ack the message: retry it
        outcomes = [exc] * len(msgs)
    failed = [(m, o) for m, o in zip(msgs, outcomes, strict=True) if isinstance(o, BaseException)]
    counts: dict[str, int] = {}
    for o in outcomes:
        key = "failed" if isinstance(o, BaseException) else o.decision
        counts[key] = counts.get(key, 0) + 1
    if not failed:
        return counts
    retries = self.request.retries
    if retries >= self.max_retries:
        for msg, exc in failed:
            with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
                log.error("scan_retries_exhausted", error=type(exc).__name__, retries=retries)
                pipeline.fail_scan(msg, deps(), f"{type(exc).__name__} after {retries + 1} attempts")
        return counts
    countdown = backoff_s(retries)
    first = failed[0][1]
    metrics.observe_error("retry:" + type(first).__name__)
    log.warning("scans_retry", failed=len(failed), of=len(msgs), error=type(first).__name__, retries=retries,
                countdown_s=round(countdown, 2))
    raise self.retry(exc=first, countdown=countdown) from None
