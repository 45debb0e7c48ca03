"""Graceful scale-down: SIGTERM (what Kubernetes and KEDA send) ends a worker within a bounded grace.

    SIGTERM                Celery's warm shutdown: stop consuming, let the task threads finish the
                           scans in hand (with the threads pool and prefetch multiplier 1, every
                           prefetched message IS in hand: one batch plus the next), ack them, exit 0
    + grace_s elapsed      GraceWatchdog: the scans still in hand (stuck on S3, say) have their
                           messages pushed back onto the queue list (kombu's unacked -> list), then
                           the process exits 1. Another worker takes them at once; one that had
                           already stored its verdict is answered from it (SET NX), never re-judged
    SIGKILL / OOM          nothing runs here: the messages stay in kombu's unacked set until the
                           visibility timeout, and the reconciler re-enqueues the scans from their S3
                           intents after TENDERSCAN_RECONCILE_STALE_AFTER_S (docs/RELIABILITY.md)

Celery >= 5.5 also has a "soft shutdown" (worker_soft_shutdown_timeout), but it is reached only
through a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT in the environment) and
then sleeps the whole timeout whenever a task is active; a warm shutdown bounded by this watchdog
exits as soon as the batch in hand is done.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("workers.runtime.shutdown")

EXIT_GRACE_EXPIRED = 1  # the exit status when the grace ran out and messages were handed back


def restore_unacked(consumer) -> int:
    """Push every message this worker holds unacked back onto its queue. Returns how many."""
    task_consumer = getattr(consumer, "task_consumer", None)
    channel = getattr(task_consumer, "channel", None) or consumer.connection.default_channel
    qos = channel.qos
    tags = list(getattr(qos, "_delivered", {}))  # a copy: task threads may ack while we walk it
    for tag in tags:
        qos.restore_by_tag(tag)  # no-op for a tag acked meanwhile (its unacked entry is gone)
    return len(tags)


class GraceWatchdog:
    """Armed on SIGTERM; unless disarmed (clean exit) within grace_s, hands work back and exits."""

    def __init__(self, grace_s: float, restore: Callable[[], int],
                 exit: Callable[[int], None] = os._exit) -> None:
        self.grace_s = grace_s
        self.restore = restore
        self.exit = exit
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.restored: int | None = None  # set when the grace expired

    def arm(self) -> None:
        if self._thread is None:
            log.info("worker_draining", grace_s=self.grace_s)
            self._thread = threading.Thread(target=self._run, name="tenderscan-grace", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self._done.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._done.wait(self.grace_s):
            return
        try:
            self.restored = self.restore()
            log.warning("shutdown_grace_expired", grace_s=self.grace_s, requeued=self.restored)
        except Exception as exc:  # noqa: BLE001 - broker away: the reconciler re-enqueues them later
            log.error("shutdown_requeue_failed", error=type(exc).__name__, detail=str(exc)[:200])
        sys.stdout.flush()
        self.exit(EXIT_GRACE_EXPIRED)
