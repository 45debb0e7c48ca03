"""After a delivery of a scan failed: retry it later, or give up with a terminal `error` verdict.

Two kinds of failure, two budgets (errors.is_outage tells them apart):

    failure                               what counts it                    bound                     then
    the scan's own: worker SIGKILLed or   `attempts` in the scan state      max_attempts deliveries   error, internal_error
      hung (InferenceTimeout), or a        (start_scans, at dequeue)
      non-transient exception
    an outage: S3 or Redis unavailable    nothing: the pipeline refunds     transient_retry_window_s  error, infrastructure_
      (StorageUnavailable,                 the attempt, and stamps           after the scan's first    unavailable
       StoreUnavailable)                   transient_since (first outage)    outage
                                           and transient_at (last)

So an S3 restart or a Redis failover never turns healthy scans into `error` verdicts, however many
deliveries it takes, and a scan that crashes its worker every time still ends after max_attempts.
The attempt is counted at dequeue and refunded at the end (rather than counted at the end) because a
SIGKILLed delivery has no end: only count-first catches it. The refund is best effort: a delivery
whose refund fails (Redis went down between dequeue and refund) stays counted; see docs/RELIABILITY.md.

Every retry waits min(cap, base * 2**retries) * U(0.5, 1.5), retries = the message's retry count.
The cap is Settings.retry_backoff_cap_s, at most half the reconciler's stale_after: every delivery
that ends in an outage stamps transient_at, and the reconciler leaves a scan alone until stale_after
past that stamp, so it never enqueues a second copy of a scan whose retry is still scheduled; while a
retry waits, its worker holds the message unacked, which Settings.cross_check keeps below the
visibility timeout. A backstop (`RetryPolicy.max_retries`, Celery's retry count of this message)
ends a scan whose state Redis lost, so that neither budget above can see it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from workers.core.clock import parse_time
from workers.core.enums import Reason
from workers.core.errors import TransientError, is_outage
from workers.core.schemas import ScanMessage
from workers.core.settings import Settings
from workers.runtime import pipeline

if TYPE_CHECKING:
    from workers.runtime.context import WorkerContext

log = structlog.get_logger("workers.runtime.retrying")

BACKOFF_BASE_S = 1.0  # the first retry waits about this long


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = Settings.default("max_attempts")  # deliveries that count before a scan is poison
    window_s: float = Settings.default("transient_retry_window_s")  # outages retried this long after the first
    cap_s: float = 30.0  # longest pause before jitter (Settings.retry_backoff_cap_s)
    base_s: float = BACKOFF_BASE_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_attempts, settings.transient_retry_window_s, settings.retry_backoff_cap_s)

    def backoff_s(self, retries: int, rng: random.Random | None = None) -> float:
        """Exponential backoff, capped, with jitter: min(cap, base * 2**retries) * 0.5..1.5."""
        return min(self.cap_s, self.base_s * 2 ** min(retries, 62)) * ((rng or random).random() + 0.5)

    @property
    def max_retries(self) -> int:
        """Backstop on one message's retries: twice what both budgets can use up (shortest pauses)."""
        ramp = math.ceil(math.log2(max(self.cap_s / self.base_s, 1))) + 1  # retries before the cap
        return 2 * (self.max_attempts + ramp + math.ceil(self.window_s / (0.5 * self.cap_s)))


def why_give_up(exc: BaseException, state: dict[str, str] | None, policy: RetryPolicy, retries: int,
                now: datetime) -> tuple[Reason, str] | None:
    """(reason, detail) if the scan must end now, None if it should be retried. Pure."""
    state = state or {}
    name = type(exc).__name__
    if retries >= policy.max_retries:
        return Reason.INTERNAL_ERROR, f"{name}: gave up after {retries + 1} deliveries of one message"
    if is_outage(exc):
        since = state.get("transient_since")
        waited = (now - parse_time(since)).total_seconds() if since else 0.0
        if waited >= policy.window_s:
            return (Reason.INFRASTRUCTURE_UNAVAILABLE,
                    f"{name}: S3 or Redis unavailable for {waited:.0f} s (transient retry window {policy.window_s:.0f} s)")
        return None
    attempts = int(state.get("attempts") or 0)
    if attempts >= policy.max_attempts:
        return Reason.INTERNAL_ERROR, f"{name} after {attempts} attempts"
    return None


def settle(failed: Sequence[tuple[ScanMessage, BaseException]], ctx: WorkerContext,
           retries: int) -> list[ScanMessage]:
    """Give the failed scans that are out of budget (ctx.policy) their `error` verdict. Returns those
    scans; the caller retries the message for the others. Raises TransientError if Redis cannot tell."""
    states = ctx.verdicts.get_scans([m.scan_id for m, _ in failed])
    now = ctx.clock()
    ended: list[ScanMessage] = []
    for (msg, exc), state in zip(failed, states, strict=True):
        verdict = why_give_up(exc, state, ctx.policy, retries, now)
        if verdict is None:
            continue
        reason, detail = verdict
        with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
            log.error("scan_retries_exhausted", error=type(exc).__name__, reason=reason.value, retries=retries)
            try:
                pipeline.fail_scan(msg, ctx, detail, reason, int((state or {}).get("attempts") or 1))
            except TransientError as fail_exc:  # its verdict could not be stored: retried with the rest
                log.warning("scan_fail_deferred", error=type(fail_exc).__name__)
                continue
        ended.append(msg)
    return ended
