"""One scan, from its queue message to its published verdict. Plain functions; the Celery task calls them.

    process_scan(msg, deps)
      verdict already stored?  -> redelivery: make sure the S3 audit record exists, return it
      mark_processing          -> attempt number; past max_attempts the scan is poison: an `error`
                                  verdict (internal_error), no further work
      past its deadline?       -> `expired` (deadline_exceeded), no inference
      S3 get (max_bytes)       -> image_missing / image_too_large
      sha256 == message's?     -> checksum_mismatch
      imaging.decode           -> the RejectedScan's reason (empty, format, unreadable, bomb, size)
      preprocess, runner.infer -> waits for this scan's batch (other task threads fill it)
      decide, publish          -> Redis SET NX first, then the winner to S3

Every bad input ends in its own `rejected` verdict; TransientError (Redis, S3, a stuck runner)
propagates so the task retries. Nothing here knows about Celery.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from workers import decide, imaging
from workers.contract import (
    Decision,
    InputRef,
    ModelRef,
    Reason,
    ScanMessage,
    Timestamps,
    Verdict,
    parse_time,
)
from workers.errors import ObjectNotFound, RejectedScan
from workers.publish import publish, write_audit
from workers.settings import Settings
from workers.storage import ObjectStore, S3ObjectStore, TooLarge, s3_client
from workers.verdict_store import VerdictStore

log = structlog.get_logger("workers.pipeline")

class Runner(Protocol):
    """What the pipeline needs from inference.ModelRunner (tests pass a twin)."""

    model_ref: ModelRef
    thresholds: Any

    def preprocess(self, image) -> Any: ...
    def infer(self, x) -> Any: ...  # -> inference.ScanPrediction


def _now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Same format as contract.utcnow()."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Deps:
    objects: ObjectStore  # the scans bucket (images in, audit records out)
    verdicts: VerdictStore
    runner: Runner
    limits: imaging.Limits
    clock: Callable[[], datetime] = _now
    max_attempts: int = Settings.max_attempts  # deliveries (retries + redeliveries) before poison

    @classmethod
    def from_settings(cls, settings: Settings, runner: Runner) -> Deps:
        objects = S3ObjectStore(s3_client(settings, max_pool=settings.effective_concurrency + 8), settings.s3_bucket)
        return cls(objects, VerdictStore.from_settings(settings), runner,
                   imaging.Limits.from_settings(settings), max_attempts=settings.max_attempts)


@dataclass
class _Stages:
    """Per-stage milliseconds for the scan_done event (metrics later read the same names)."""

    ms: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.ms[name + "_ms"] = round((now - self._t) * 1000, 2)
        self._t = now


def _input_ref(msg: ScanMessage, info: imaging.ImageInfo | None = None) -> InputRef:
    return InputRef(key=msg.image_key, sha256=msg.sha256, bytes=msg.bytes,
                    width=info.width if info else None, height=info.height if info else None)


def unjudged_verdict(msg: ScanMessage, decision: Decision, reason: str, detail: str, attempt: int,
                     dequeued: str | None, completed: str, info: imaging.ImageInfo | None = None) -> Verdict:
    """A rejected, expired or error verdict: no inference, so no probabilities and no model."""
    return Verdict(scan_id=msg.scan_id, tenant=msg.tenant, store_id=msg.store_id, terminal_id=msg.terminal_id,
                   decision=decision.value, input=_input_ref(msg, info),
                   timestamps=Timestamps(submitted=msg.submitted_at, dequeued=dequeued, completed=completed),
                   reason=str(reason), detail=detail or None, attempt=attempt)


def _fetch_decode(msg: ScanMessage, deps: Deps, stages: _Stages):
    """S3 -> checked bytes -> RGB image -> model input. Raises RejectedScan for every bad input."""
    try:
        obj = deps.objects.get(msg.image_key, max_bytes=deps.limits.max_bytes)
    except TooLarge as exc:
        raise RejectedScan(Reason.IMAGE_TOO_LARGE, f"{exc.size} bytes > limit {deps.limits.max_bytes}") from None
    except ObjectNotFound:
        raise RejectedScan(Reason.IMAGE_MISSING, "no object at the scan's image key") from None
    stages.lap("fetch")
    if hashlib.sha256(obj.data).hexdigest() != msg.sha256:
        raise RejectedScan(Reason.CHECKSUM_MISMATCH, "stored bytes differ from the bytes accepted")
    image, info = imaging.decode(obj.data, deps.limits)
    x = deps.runner.preprocess(image)
    stages.lap("decode")
    return x, info


def process_scan(msg: ScanMessage, deps: Deps) -> Verdict:
    stages = _Stages()
    existing = deps.verdicts.get_verdict(msg.scan_id)
    if existing is not None:
        write_audit(existing, deps.objects, only_if_missing=True)
        log.info("scan_redelivered", decision=existing.decision, attempt=existing.attempt)
        return existing
    attempt = deps.verdicts.mark_processing(msg.scan_id)
    dequeued_at = deps.clock()
    dequeued = iso(dequeued_at)
    queue_wait_ms = round((dequeued_at - parse_time(msg.submitted_at)).total_seconds() * 1000, 2)

    def finish(verdict: Verdict) -> Verdict:
        winner = publish(verdict, deps.verdicts, deps.objects)
        stages.lap("publish")
        log.info("scan_done", decision=winner.decision, reason=winner.reason, attempt=attempt,
                 batch_id=winner.batch_id, batch_size=winner.batch_size, queue_wait_ms=queue_wait_ms,
                 **stages.ms)
        return winner

    if attempt > deps.max_attempts:
        return finish(unjudged_verdict(msg, Decision.ERROR, Reason.INTERNAL_ERROR,
                                       f"failed {attempt - 1} deliveries", attempt, dequeued, iso(deps.clock())))
    if msg.deadline is not None and parse_time(msg.deadline) < dequeued_at:
        return finish(unjudged_verdict(msg, Decision.EXPIRED, Reason.DEADLINE_EXCEEDED,
                                       f"dequeued after the deadline {msg.deadline}", attempt, dequeued,
                                       iso(deps.clock())))
    try:
        x, info = _fetch_decode(msg, deps, stages)
    except RejectedScan as exc:
        return finish(unjudged_verdict(msg, Decision.REJECTED, exc.reason, exc.detail, attempt, dequeued,
                                       iso(deps.clock())))

    pred = deps.runner.infer(x)
    stages.ms.update(batch_wait_ms=round(pred.batch_wait_ms, 2), forward_ms=round(pred.forward_ms, 2))
    stages.lap("infer")
    fields = decide.decide(pred.p_counterfeit, pred.signs, pred.denomination, deps.runner.thresholds)
    verdict = Verdict(
        scan_id=msg.scan_id, tenant=msg.tenant, store_id=msg.store_id, terminal_id=msg.terminal_id,
        input=_input_ref(msg, info),
        timestamps=Timestamps(submitted=msg.submitted_at, dequeued=dequeued, inference_start=pred.inference_start,
                              inference_end=pred.inference_end, completed=iso(deps.clock())),
        model=deps.runner.model_ref, batch_id=pred.batch_id, batch_size=pred.batch_size, attempt=attempt,
        **fields.as_verdict_fields(),
    )
    return finish(verdict)


def fail_scan(msg: ScanMessage, deps: Deps, detail: str) -> Verdict:
    """Give up on a scan that kept failing (retries exhausted): a terminal `error` verdict (internal_error)."""
    attempt = int((deps.verdicts.get_scan(msg.scan_id) or {}).get("attempts") or 1)
    now = iso(deps.clock())
    verdict = unjudged_verdict(msg, Decision.ERROR, Reason.INTERNAL_ERROR, detail, attempt, now, now)
    winner = publish(verdict, deps.verdicts, deps.objects)
    log.warning("scan_failed", decision=winner.decision, reason=winner.reason, attempt=attempt)
    return winner


def reject_bad_message(scan_id: str, detail: str, deps: Deps) -> Verdict | None:
    """A message that does not decode but names a scan the edge recorded: reject that scan.

    The scan's hash in Redis (written by the edge) supplies tenant and submission date, so the
    audit record lands in the right partition. Without it there is no scan to answer for.
    """
    scan = deps.verdicts.get_scan(scan_id)
    if not scan or not scan.get("tenant") or not scan.get("submitted_at"):
        return None
    msg = ScanMessage(scan_id=scan_id, tenant=scan["tenant"], store_id=scan.get("store_id", ""),
                      terminal_id=scan.get("terminal_id", ""), image_key=scan.get("image_key", ""),
                      sha256="", bytes=0, submitted_at=scan["submitted_at"])
    now = iso(deps.clock())
    verdict = unjudged_verdict(msg, Decision.REJECTED, Reason.BAD_MESSAGE, detail, 1, now, now)
    return publish(verdict, deps.verdicts, deps.objects)
