"""The worker's Celery app: `celery -A workers.app worker` (or `tenderscan worker`).

Settings are read from the environment once, here. Importing this module registers the task and
the hooks that build the model runner in the process that will use it:

    celeryd_init          a worker process: TENDERSCAN_WORKER_PROCESSES > 1 is refused (exit 2), since
                          only `tenderscan worker`'s supervisor runs several
    celeryd_after_setup   log `worker_starting` (node, pool, concurrency, queues); with JSON logs this
                          event replaces Celery's text banner, so every line of the worker is JSON
    worker_init           TLS endpoints (rediss://, https:// S3) verify against the configured CAs, or exit
    worker_process_init   prefork children and the solo pool: build after the fork
    worker_init           threads pool: build in the worker's main process before it consumes
    worker_ready          serve Prometheus /metrics on TENDERSCAN_METRICS_PORT (workers/metrics.py);
                          start the reconciler thread (workers/reconcile.py; the scans in flight every
                          TENDERSCAN_RECONCILE_INTERVAL_S, the S3 sweep every ..._SWEEP_INTERVAL_S and
                          after a Redis restart; one worker at a time via a Redis lock)
    worker_shutting_down  SIGTERM: warm shutdown bounded by TENDERSCAN_SHUTDOWN_GRACE_S; past it the
                          scans still in hand go back to the queue and the process exits (workers/shutdown.py)
    worker_shutdown       stop the reconciler, close the batcher (pending scans finish first)

`workers.tasks` also builds the runner lazily, under a lock, should no hook have run.
A model that does not load stops the worker at start (SystemExit: Celery swallows ordinary
exceptions from signal handlers), instead of consuming scans it can only fail.

The bare `celery -A workers.app worker` (no -P, -c, -Q) starts the same worker as `tenderscan worker`:
this app's `worker_pool` is threads (the task threads share one process, one model, one batcher;
Celery's default prefork would fork `concurrency` children that each load the model and batch alone),
and the concurrency and queue come from workers/celery_app.py. Celery cannot tell an explicit
`-P prefork` from its default, so that one gets threads too: use `tenderscan worker --pool prefork`.
"""

from __future__ import annotations

from celery import signals

from workers import publish, signing
from workers.celery_app import make_celery
from workers.logging import configure_logging, get_logger, say_as_json
from workers.settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_json)  # before any hook below logs
if settings.log_json:  # Celery prints a few lines from its signal handlers ("worker: Warm shutdown"): JSON too
    import celery.apps.worker

    celery.apps.worker.safe_say = say_as_json
app = make_celery(settings)
app.conf.worker_pool = "threads"  # the worker's, not the producer's app: see the module docstring
app.set_current()
log = get_logger("workers.app")


@signals.setup_logging.connect
def _setup_logging(**_) -> None:
    """Connected so that Celery leaves logging to us: its own records (and kombu's) reach stdout as
    JSON through the root handler workers/logging.py installs."""
    configure_logging(settings.log_level, settings.log_json)


def _pool_name(worker) -> str:
    pool = getattr(worker, "pool_cls", None)
    return pool if isinstance(pool, str) else getattr(pool, "__module__", "").rsplit(".", 1)[-1]


@signals.celeryd_init.connect
def _one_process_only(**_) -> None:
    """`celery -A workers.app worker` is one process: a setting that asks for more gets a clear no."""
    from workers.supervisor import resolve_processes

    processes = resolve_processes(settings.worker_processes)
    if processes > 1:
        log.critical("worker_processes_unsupported", setting="TENDERSCAN_WORKER_PROCESSES",
                     value=settings.worker_processes, processes=processes,
                     detail="celery -A workers.app worker runs one process; start `tenderscan worker`, "
                            "which supervises that many")
        raise SystemExit(2)


@signals.celeryd_after_setup.connect
def _log_start(sender=None, instance=None, **_) -> None:
    if settings.log_json and instance is not None:
        instance.quiet = True  # read right after this signal: no multi-line text banner on stdout
    pool = _pool_name(instance)
    queues = sorted(instance.app.amqp.queues.consume_from) if instance is not None else []
    log.info("worker_starting", node=sender, pool={"thread": "threads"}.get(pool, pool),  # the -P name
             concurrency=getattr(instance, "concurrency", None), queues=queues)


def _build_runner() -> None:
    from workers import inference

    try:
        inference.start(settings)
    except Exception as exc:
        log.critical("model_load_failed", model=settings.model, error=type(exc).__name__, detail=str(exc)[:300])
        raise SystemExit(3) from exc


@signals.worker_init.connect
def _check_transport(**_) -> None:
    """A TLS certificate the configured CA does not vouch for stops the worker at start, named
    (workers/transport.py), instead of an endless broker reconnect loop."""
    from workers.transport import TransportError, check_tls

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
    from workers import contract
    from workers.reconcile import Reconciler, queue_head_reader
    from workers.storage import S3ObjectStore
    from workers.verdict_store import VerdictStore, redis_client

    def enqueue(msg: contract.ScanMessage) -> None:
        app.send_task(contract.TASK_NAME, args=[msg.encode()], queue=contract.QUEUE)

    _reconciler = Reconciler(S3ObjectStore.from_settings(settings), VerdictStore.from_settings(settings), enqueue,
                             settings.reconcile_interval_s, settings.reconcile_stale_after_s, settings.reconcile_days,
                             sweep_interval_s=settings.reconcile_sweep_interval_s,
                             queue_head=queue_head_reader(redis_client(settings.effective_broker_url)))
    _reconciler.start()


_heartbeat = None


@signals.worker_ready.connect
def _start_heartbeat(**_) -> None:
    """Liveness for Kubernetes (`python -m workers.health`): fresh while the batcher thread runs."""
    global _heartbeat
    from pathlib import Path

    from workers import health, inference

    def alive() -> bool:
        runner = inference._runner
        return runner is None or runner.batcher._thread.is_alive()  # prefork parent: no runner here

    _heartbeat = health.start_heartbeat(alive, Path(settings.heartbeat_file))


@signals.worker_ready.connect
def _serve_metrics(**_) -> None:
    """Prometheus /metrics on TENDERSCAN_METRICS_PORT (workers/metrics.py); 0 = off."""
    from workers import metrics

    if metrics.serve(settings.metrics_port):
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
    from workers.shutdown import GraceWatchdog, restore_unacked

    _watchdog = GraceWatchdog(settings.shutdown_grace_s, lambda: restore_unacked(_consumer))
    _watchdog.arm()


@signals.worker_shutdown.connect
def _close(**_) -> None:
    from workers import inference

    if _watchdog is not None:
        _watchdog.disarm()
    if _reconciler is not None:
        _reconciler.stop()
    if _heartbeat is not None:
        _heartbeat.set()
    inference.stop()


from workers import tasks  # noqa: E402,F401  - registers the task on `app`
