"""What one worker process holds: built once when it starts, then handed to every task (arq's `ctx`).

    WorkerContext.from_settings   at worker_init, in the worker's main process: the settings, the audit
                                  signer, the retry policy, the image limits, the scan slots
    load()                        in the process that runs the model, after any fork (a threads pool's
                                  main process, a solo pool's, each prefork child): the model runner
                                  (CUDA is touched here and only here), the S3 and Redis stores, the
                                  threads that fan out a multi-scan message's scans
    start_services(app, consumer) at worker_ready: the reconciler, the model watcher (models_live.py),
                                  the liveness heartbeat, the Prometheus exporter; the consumer the shutdown watchdog requeues through
    drain()                       on a warm shutdown (SIGTERM): the grace watchdog
    close()                       at worker_shutdown: everything above, stopped

runtime/worker.py builds it and attaches it to the Celery app (`attach`); a task finds it on its own
app (`context_of(task.app)`). Nothing about it is global, so a test builds its own: the fields a scan
needs (objects, verdicts, runner, ...) are plain constructor arguments, with no Celery and no
environment involved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from workers.core import imaging
from workers.core.review_queue import ReviewQueue
from workers.core.schemas import ModelRef
from workers.core.settings import Settings
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore
from workers.runtime.batching import ScanSlots
from workers.runtime.retrying import RetryPolicy

if TYPE_CHECKING:
    from workers.audit.signing import Signer
    from workers.runtime.reconcile import Reconciler
    from workers.runtime.shutdown import GraceWatchdog
    from workers.webhooks.outbox import Outbox

log = structlog.get_logger("workers.runtime.context")
_ATTRIBUTE = "tenderscan_context"  # where attach() leaves the context on a Celery app


class Runner(Protocol):
    """What the pipeline needs from runner.ModelRunner (tests and the benchmark pass twins)."""

    model_ref: ModelRef
    thresholds: Any

    def preprocess(self, image) -> Any: ...
    def submit(self, x) -> Future: ...  # queue one scan's model input for its batch
    def result(self, future: Future) -> Any: ...  # -> runner.ScanPrediction, or InferenceTimeout
    def expecting(self, n: int = 1) -> AbstractContextManager: ...  # n scans will be submitted in this block
    def close(self) -> None: ...


def now() -> datetime:
    return datetime.now(UTC)


class InlineExecutor(Executor):
    """Runs each job as it is submitted, in the caller's thread: how a message of one runs (no thread hop)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - a Future carries any outcome, as a pool's does
            future.set_exception(exc)
        return future


INLINE = InlineExecutor()  # stateless


@dataclass(eq=False)
class WorkerContext:
    """Everything one worker process holds (see the module docstring). Mutable: load() and the
    services fill it in; a test builds one by hand with the fields a scan needs."""

    # --- what a scan needs (pipeline.py, publish.py, retrying.py) ---------------------------------------
    objects: ObjectStore | None = None  # the scans bucket: images in, audit records out
    verdicts: VerdictStore | None = None  # scan states and verdicts in Redis
    reviews: ReviewQueue | None = None  # the review queue (Redis); None: no scan is queued for a person
    runner: Runner | None = None  # the model behind its batcher
    limits: imaging.Limits = field(default_factory=imaging.Limits)
    signer: Signer | None = None  # signs each audit record; None: written unsigned (`audit verify` flags them)
    policy: RetryPolicy = field(default_factory=RetryPolicy)  # max_attempts, the outage window, backoff
    clock: Callable[[], datetime] = now
    fanout: Executor | None = None  # threads for the scans of a multi-scan message (None: in the caller's)
    webhooks: Outbox | None = None  # schedules scan.completed webhook events; None: none are sent
    # scans of multi-scan messages in flight in this process (tasks.py takes them per message)
    slots: ScanSlots = field(default_factory=lambda: ScanSlots(2 * Settings().effective_concurrency))
    # --- the worker's own services (runtime/worker.py starts and stops them) --------------------------
    settings: Settings | None = None  # what load() builds from; None for a context built by hand
    reconciler: Reconciler | None = None
    heartbeat: threading.Event | None = None  # set() stops the heartbeat thread
    metrics_server: Any = None  # the Prometheus exporter's HTTP server
    consumer: Any = None  # Celery's consumer (worker_ready's sender): the grace watchdog requeues through it
    watchdog: GraceWatchdog | None = None
    model_watcher: Any = None  # models_live.ModelWatcher: follows the registry alias (None: pinned)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _loaded: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        """The part that is safe to build before a fork: no connection, no model, no thread."""
        from workers.audit.signing import signer_from_settings

        # scans of multi-scan messages in flight in this process, however many scans each message carries:
        # twice what the task threads allow single scans (settings.effective_concurrency), so one message's
        # publish overlaps the next one's fetch and decode (measured: one message at a time starves the
        # batcher, dozens at a time fight over the GIL; docs/history/PERFORMANCE-log.md)
        return cls(limits=imaging.Limits.from_settings(settings), signer=signer_from_settings(settings),
                   policy=RetryPolicy.from_settings(settings), slots=ScanSlots(2 * settings.effective_concurrency),
                   settings=settings)

    # --- in the process that runs the model ---------------------------------------------------------
    def load(self) -> WorkerContext:
        """Build whatever is missing of the runner, the stores and the fan-out threads; idempotent and
        thread-safe. A Celery signal calls it in the process that will run the model (runtime/worker.py);
        a task calls it too, in case no signal did (a pool that sends neither)."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            settings = self.settings
            if settings is None:
                missing = [name for name in ("objects", "verdicts", "runner") if getattr(self, name) is None]
                if missing:
                    raise RuntimeError(f"a WorkerContext without settings needs its {', '.join(missing)} given")
            else:
                if self.runner is None:
                    from workers.runtime.runner import build_runner

                    self.runner = build_runner(settings)
                if self.objects is None:
                    from workers.core.storage import S3ObjectStore, s3_client

                    client = s3_client(settings, max_pool=settings.effective_concurrency + 8)
                    self.objects = S3ObjectStore(client, settings.s3_bucket)
                if self.verdicts is None:
                    self.verdicts = VerdictStore.from_settings(settings)
                if self.reviews is None:
                    self.reviews = ReviewQueue.from_settings(self.verdicts.r, settings)
                if self.fanout is None:  # as many threads as the scans one worker process has in flight
                    self.fanout = ThreadPoolExecutor(settings.effective_concurrency,
                                                     thread_name_prefix="tenderscan-scan")
                if self.webhooks is None:
                    from workers.core.verdict_store import redis_client
                    from workers.webhooks.outbox import Outbox

                    self.webhooks = Outbox(redis_client(settings.redis_url), settings.webhook_retention_s,
                                           settings.webhook_lease_s)
            self._loaded = True
        return self

    def executor_for(self, scans: int) -> Executor:
        """Where a message's per-scan jobs run: a message of one in its own task thread, start to end;
        several on the fan-out threads (in the caller's thread too when this context has none)."""
        return self.fanout if scans > 1 and self.fanout is not None else INLINE

    def alive(self) -> bool:
        """The liveness heartbeat's question: does the batcher thread run? (A prefork parent has no runner.)"""
        batcher = getattr(self.runner, "batcher", None)
        return batcher is None or batcher.is_alive()

    # --- the worker's services ------------------------------------------------------------------------
    def start_services(self, app, consumer=None) -> None:
        """worker_ready: the reconciler (one worker per interval, by a Redis lock), the heartbeat file
        (`python -m workers.health`), the Prometheus exporter (TENDERSCAN_METRICS_PORT; 0 = off)."""
        from workers.core import keys, telemetry
        from workers.core.storage import S3ObjectStore
        from workers.core.verdict_store import redis_client
        from workers.runtime import health
        from workers.runtime.reconcile import Reconciler, queue_head_reader

        settings = self.settings
        self.consumer = consumer
        if settings.reconcile_interval_s > 0:
            def enqueue(msg) -> None:
                app.send_task(keys.TASK_NAME, args=[msg.encode()], queue=keys.QUEUE)

            self.reconciler = Reconciler(S3ObjectStore.from_settings(settings), VerdictStore.from_settings(settings),
                                         enqueue, settings.reconcile_interval_s, settings.reconcile_stale_after_s,
                                         settings.reconcile_days, signer=self.signer,
                                         sweep_interval_s=settings.reconcile_sweep_interval_s,
                                         queue_head=queue_head_reader(redis_client(settings.effective_broker_url)))
            self.reconciler.start()
        from workers.runtime.models_live import start_watcher

        self.model_watcher = start_watcher(self.runner, settings, self.verdicts, self.signer)
        self.heartbeat = health.start_heartbeat(self.alive, Path(settings.heartbeat_file))
        self.metrics_server = telemetry.serve(settings.metrics_port)
        if self.metrics_server is not None:
            log.info("metrics_serving", port=settings.metrics_port)

    def drain(self) -> None:
        """SIGTERM (warm): finish the scans in hand, but for at most settings.shutdown_grace_s."""
        if self.consumer is None or self.watchdog is not None:
            return
        from workers.runtime.shutdown import GraceWatchdog, restore_unacked

        consumer = self.consumer
        self.watchdog = GraceWatchdog(self.settings.shutdown_grace_s, lambda: restore_unacked(consumer))
        self.watchdog.arm()

    def close(self) -> None:
        """Stop everything this context started; the batcher runs what is pending first."""
        if self.watchdog is not None:
            self.watchdog.disarm()
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.model_watcher is not None:
            self.model_watcher.stop()
        if self.heartbeat is not None:
            self.heartbeat.set()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        if self.runner is not None:
            self.runner.close()
        if self.fanout is not None:
            self.fanout.shutdown(wait=False)


def attach(app, ctx: WorkerContext) -> WorkerContext:
    """Give a Celery app its worker context (runtime/worker.py at worker_init; a benchmark or a test sooner)."""
    setattr(app, _ATTRIBUTE, ctx)
    return ctx


def context_of(app) -> WorkerContext | None:
    """The context attached to a Celery app, or None before its worker started."""
    return getattr(app, _ATTRIBUTE, None)
