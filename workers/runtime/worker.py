"""The worker's Celery app: `celery -A workers.app worker -P threads` (or `tenderscan worker`).

Settings are read from the environment once, here. Importing this module registers the task and
the hooks that build the model runner in the process that will use it:

    worker_init           TLS endpoints (rediss://, https:// S3) verify against the configured CAs, or exit
    worker_process_init   prefork children and the solo pool: build after the fork
    worker_init           threads pool: build in the worker's main process before it consumes
    worker_ready          serve Prometheus /metrics on TENDERSCAN_METRICS_PORT (workers/telemetry.py);
                          start the reconciler thread (workers/runtime/reconcile.py; every
                          TENDERSCAN_RECONCILE_INTERVAL_S, one worker at a time via a Redis lock)
    worker_shutting_down  SIGTERM: warm shutdown bounded by TENDERSCAN_SHUTDOWN_GRACE_S; past it the
                          scans still in hand go back to the queue and the process exits (workers/runtime/shutdown.py)
    worker_shutdown       stop the reconciler, close the batcher (pending scans finish first)

`workers.tasks` also builds the runner lazily, under a lock, should no hook have run.
A model that does not load stops the worker at start (SystemExit: Celery swallows ordinary
exceptions from signal handlers), instead of consuming scans it can only fail.
"""

from __future__ import annotations

from celery import signals

from workers.audit import signing
from workers.core.celery_app import make_celery
from workers.core.logging import configure_logging, get_logger
from workers.core.settings import Settings
from workers.runtime import publish

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_json)  # before any hook below logs
app = make_celery(settings)
app.set_current()
log = get_logger("workers.runtime.worker")


@signals.setup_logging.connect
def _setup_logging(**_) -> None:
    """Connected so that Celery leaves logging to us (its own records still reach stdout)."""
    configure_logging(settings.log_level, settings.log_json)


def _pool_name(worker) -> str:
    pool = getattr(worker, "pool_cls", None)
    return pool if isinstance(pool, str) else getattr(pool, "__module__", "").rsplit(".", 1)[-1]


def _build_runner() -> None:

    try:
        from workers.runtime import runner as model_runner

        model_runner.start(settings)
    except Exception as exc:
        log.critical("model_load_failed", model=settings.model, error=type(exc).__name__, detail=str(exc)[:300])
        raise SystemExit(3) from exc


@signals.worker_init.connect
def _check_transport(**_) -> None:
    """A TLS certificate the configured CA does not vouch for stops the worker at start, named
    (workers/core/transport.py), instead of an endless broker reconnect loop."""
    from workers.core.transport import TransportError, check_tls

    try:
        check_tls(settings)
    except TransportError as exc:
        log.critical("tls_verification_failed", detail=str(exc))
        raise SystemExit(3) from exc


@signals.worker_init.connect
def _install_signer(**_) -> None:
    """Audit records signed (docs/AUDIT.md). In worker_init, not at import: `celery -A workers.app
    inspect ...` imports this module too, and its stdout must stay clean JSON. Prefork children
    inherit the signer from the parent."""
    publish.configure_signing(signing.signer_from_settings(settings))


@signals.worker_init.connect
def _build_in_main_process(sender=None, **_) -> None:
    if _pool_name(sender) in ("threads", "thread"):
        _build_runner()


@signals.worker_process_init.connect
def _build_after_fork(**_) -> None:
    _build_runner()


_reconciler = None


@signals.worker_ready.connect
def _start_reconciler(**_) -> None:
    global _reconciler
    if settings.reconcile_interval_s <= 0:
        return
    from workers.core import keys
    from workers.core.schemas import ScanMessage
    from workers.core.storage import S3ObjectStore
    from workers.core.verdict_store import VerdictStore
    from workers.runtime.reconcile import Reconciler

    def enqueue(msg: ScanMessage) -> None:
        app.send_task(keys.TASK_NAME, args=[msg.encode()], queue=keys.QUEUE)

    _reconciler = Reconciler(S3ObjectStore.from_settings(settings), VerdictStore.from_settings(settings), enqueue,
                             settings.reconcile_interval_s, settings.reconcile_stale_after_s, settings.reconcile_days)
    _reconciler.start()


_heartbeat = None


@signals.worker_ready.connect
def _start_heartbeat(**_) -> None:
    """Liveness for Kubernetes (`python -m workers.health`): fresh while the batcher thread runs."""
    global _heartbeat
    from pathlib import Path

    from workers.runtime import health
    from workers.runtime import runner as model_runner

    def alive() -> bool:
        runner = model_runner._runner
        return runner is None or runner.batcher._thread.is_alive()  # prefork parent: no runner here

    _heartbeat = health.start_heartbeat(alive, Path(settings.heartbeat_file))


@signals.worker_ready.connect
def _serve_metrics(**_) -> None:
    """Prometheus /metrics on TENDERSCAN_METRICS_PORT (workers/telemetry.py); 0 = off."""
    from workers.core import telemetry

    if telemetry.serve(settings.metrics_port):
        log.info("metrics_serving", port=settings.metrics_port)


_consumer = None  # the Celery consumer (worker_ready's sender): the grace watchdog requeues through it
_watchdog = None


@signals.worker_ready.connect
def _remember_consumer(sender=None, **_) -> None:
    global _consumer
    _consumer = sender


@signals.worker_shutting_down.connect
def _bound_the_drain(how=None, **_) -> None:
    """SIGTERM (warm): finish the scans in hand, but for at most settings.shutdown_grace_s."""
    global _watchdog
    if how != "Warm" or _consumer is None or _watchdog is not None:
        return
    from workers.runtime.shutdown import GraceWatchdog, restore_unacked

    _watchdog = GraceWatchdog(settings.shutdown_grace_s, lambda: restore_unacked(_consumer))
    _watchdog.arm()


@signals.worker_shutdown.connect
def _close(**_) -> None:
    from workers.runtime import runner as model_runner

    if _watchdog is not None:
        _watchdog.disarm()
    if _reconciler is not None:
        _reconciler.stop()
    if _heartbeat is not None:
        _heartbeat.set()
    model_runner.stop()


from workers.runtime import tasks  # noqa: E402,F401  - registers the task on `app`
