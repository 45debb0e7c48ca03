"""The Celery tasks: thin adapters from a queue message to `pipeline.process_scans`.

    register(app)           adds both tasks to a Celery app; each finds the worker context on its own
                            app (context.context_of), so a test registers them on an app of its own
    tenderscan.process_scan   one ScanMessage: decode, bind log context (scan_id, tenant), then the
                              pipeline with a message of one
    tenderscan.process_scans  a MultiScanMessage: decode (a scan that does not decode is rejected on its
                              own), wait for slots (ctx.slots: at most 2 x effective_concurrency scans of
                              such messages in flight per process), then the pipeline
    a message that does not decode     log, reject the scan if its id is known, ack (nothing to retry)
    scans that failed       retrying.settle: out of budget -> an `error` verdict (internal_error after
                            max_attempts counted deliveries; infrastructure_unavailable after the transient
                            retry window of S3/Redis outages), so a client never polls forever; if any is
                            left, the whole message is retried with capped exponential backoff and jitter
                            (workers/runtime/retrying.py) and its scans with a verdict skip to it

The task is acked late (after every verdict in it is published). Logs carry ids and reason codes only:
never image bytes, S3 credentials or API keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from workers.core import schemas, telemetry
from workers.core.enums import Decision
from workers.core.errors import ContractError, TransientError, is_outage
from workers.core.keys import MULTI_TASK_NAME, TASK_NAME
from workers.core.schemas import MultiScanMessage, ScanMessage
from workers.runtime import pipeline, retrying
from workers.runtime.context import WorkerContext, context_of

log = structlog.get_logger("workers.runtime.tasks")

MAX_RETRIES = None  # Celery's own limit is off: the retry policy decides when a scan ends (and has a backstop)


def register(app) -> None:
    """Add tenderscan's two tasks to `app` (runtime/worker.py does, at import)."""

    @app.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
    def process_scan(self, raw) -> str | None:
        return handle_scan(self, raw, _context(self))

    @app.task(name=MULTI_TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
    def process_scans(self, raw) -> dict[str, int] | None:
        return handle_scans(self, raw, _context(self))


def _context(task) -> WorkerContext:
    ctx = context_of(task.app)
    if ctx is None:
        raise RuntimeError("no worker context on this Celery app: run it with `celery -A workers.app worker`")
    return ctx.load()  # built already by a signal in this process, unless its pool sends none


def handle_scan(task, raw, ctx: WorkerContext) -> str | None:
    """One scan: its decision (`error` when it was given up now), None for a message that does not decode."""
    try:
        msg = ScanMessage.decode(raw)
    except ContractError as exc:
        _bad_message(raw, exc, ctx)
        return None
    with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
        return _run(task, [msg], ctx)[0]


def handle_scans(task, raw, ctx: WorkerContext) -> dict[str, int] | None:
    """Several scans in one message (bulk submissions): decisions counted, None if the envelope is bad."""
    try:
        msgs, bad = MultiScanMessage.decode_parts(raw)
    except ContractError as exc:
        log.warning("bad_message", detail=exc.detail[:200], multi=True)
        return None
    for item, exc in bad:
        _bad_message(item, exc, ctx, multi=True)
    taken = ctx.slots.acquire(len(msgs))
    try:
        decisions = _run(task, msgs, ctx)
    finally:
        ctx.slots.release(taken)
    counts: dict[str, int] = {}
    for decision in decisions:
        counts[decision] = counts.get(decision, 0) + 1
    return counts


def _run(task, msgs: Sequence[ScanMessage], ctx: WorkerContext) -> list[str]:
    """The pipeline, then the failed scans settled: each scan's decision (`error` for one given up now).
    Raises the message's Retry while any scan is left without a verdict."""
    try:
        outcomes: list[Any] = pipeline.process_scans(msgs, ctx)
    except Exception as exc:  # noqa: BLE001 - never let an unexpected error ack the message: retry it
        outcomes = [exc] * len(msgs)
    failed = [(m, o) for m, o in zip(msgs, outcomes, strict=True) if isinstance(o, BaseException)]
    if failed:
        ended = _settle(task, failed, ctx)
        if len(ended) < len(failed):
            raise _retry(task, ctx, failed[0][1], failed=len(failed) - len(ended), of=len(msgs)) from None
    return [Decision.ERROR.value if isinstance(o, BaseException) else o.decision for o in outcomes]


def _bad_message(raw, exc: ContractError, ctx: WorkerContext, multi: bool = False) -> None:
    """A message (or one scan of a multi-scan message) that does not decode: nothing to retry. If it
    names a scan the edge recorded, that scan gets its `rejected` verdict (bad_message)."""
    scan_id = raw.get("scan_id") if isinstance(raw, dict) else None
    known = isinstance(scan_id, str) and schemas.is_scan_id(scan_id)
    log.warning("bad_message", scan_id=scan_id if known else None, detail=exc.detail[:200], multi=multi)
    if known:
        pipeline.reject_bad_message(scan_id, exc.detail[:200], ctx)


def _settle(task, failed: Sequence[tuple[ScanMessage, BaseException]], ctx: WorkerContext) -> list[ScanMessage]:
    """The failed scans that got their terminal `error` verdict now (out of budget); [] when Redis
    cannot tell, so the message is retried."""
    try:
        return retrying.settle(failed, ctx, task.request.retries)
    except TransientError as exc:
        log.warning("scan_settle_deferred", error=type(exc).__name__)
        return []


def _retry(task, ctx: WorkerContext, exc: BaseException, failed: int, of: int):
    """Celery's Retry for this message, after a capped exponential backoff with jitter."""
    retries = task.request.retries
    countdown = ctx.policy.backoff_s(retries)
    telemetry.observe_error("retry:" + type(exc).__name__)
    transient = isinstance(exc, TransientError)
    log.warning("scan_retry", error=type(exc).__name__, transient=transient, outage=is_outage(exc),
                failed=failed, of=of, retries=retries, countdown_s=round(countdown, 2),
                exc_info=False if transient else exc)
    return task.retry(exc=exc, countdown=countdown)
