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

import structlog

from workers import contract, pipeline
from workers.app import app, settings
from workers.contract import ScanMessage
from workers.errors import ContractError, TransientError

log = structlog.get_logger("workers.tasks")

MAX_RETRIES = settings.max_attempts - 1  # retries after the first delivery
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0

_deps_lock = threading.Lock()
_deps: pipeline.Deps | None = None


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
            log.warning("scan_retry", error=type(exc).__name__, transient=transient, retries=retries,
                        countdown_s=round(countdown, 2), exc_info=not transient)
            raise self.retry(exc=exc, countdown=countdown) from None
