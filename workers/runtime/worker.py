"""The worker's Celery app (`celery -A workers.app worker -P threads`, or `tenderscan worker`) and the
hooks that build, start and stop its context (runtime/context.py), one per worker process.

Settings are read from the environment once, here. Importing this module registers the tasks and
the hooks; it builds nothing else (`celery -A workers.app inspect ...` imports it too, and its
stdout must stay clean JSON):

    worker_init           TLS endpoints (rediss://, https:// S3) verify against the configured CAs, or
                          exit; then the WorkerContext (settings, audit signer, retry policy, slots) is
                          attached to the app. A threads pool loads its runner and stores here, in the
                          worker's one process, before it consumes
    worker_process_init   a prefork child or the solo pool: load the runner and stores there, after the
                          fork (CUDA is never initialised in a parent that forks)
    worker_ready          start the context's services: the reconciler (one worker per interval, by a
                          Redis lock), the liveness heartbeat, Prometheus /metrics on TENDERSCAN_METRICS_PORT
    worker_shutting_down  SIGTERM: warm shutdown bounded by TENDERSCAN_SHUTDOWN_GRACE_S; past it the
                          scans still in hand go back to the queue and the process exits (shutdown.py)
    worker_shutdown       close the context: reconciler, heartbeat, exporter, batcher (pending scans finish)

A model that does not load stops the worker at start (SystemExit: Celery swallows ordinary
exceptions from signal handlers), instead of consuming scans it can only fail. A benchmark may
attach a context of its own before the worker starts (producer/bench/ceiling.py); worker_init keeps it.
"""

from __future__ import annotations

from celery import signals

from workers.core.celery_app import make_celery
from workers.core.logging import configure_logging, get_logger
from workers.core.settings import Settings
from workers.runtime import tasks
from workers.runtime.context import WorkerContext, attach, context_of

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_json)  # before any hook below logs
app = make_celery(settings)
app.set_current()
tasks.register(app)
log = get_logger("workers.runtime.worker")


@signals.setup_logging.connect
def _setup_logging(**_) -> None:
    """Connected so that Celery leaves logging to us (its own records still reach stdout)."""
    configure_logging(settings.log_level, settings.log_json)


def _pool_name(worker) -> str:
    pool = getattr(worker, "pool_cls", None)
    return pool if isinstance(pool, str) else getattr(pool, "__module__", "").rsplit(".", 1)[-1]


def _load(ctx: WorkerContext) -> None:
    try:
        ctx.load()
    except Exception as exc:
        log.critical("model_load_failed", model=settings.model, error=type(exc).__name__, detail=str(exc)[:300])
        raise SystemExit(3) from exc


@signals.worker_init.connect
def _start(sender=None, **_) -> None:
    """A TLS certificate the configured CA does not vouch for stops the worker at start, named
    (core/transport.py), instead of an endless broker reconnect loop. Then the context."""
    from workers.core.transport import TransportError, check_tls

    try:
        check_tls(settings)
    except TransportError as exc:
        log.critical("tls_verification_failed", detail=str(exc))
        raise SystemExit(3) from exc
    ctx = context_of(app) or attach(app, WorkerContext.from_settings(settings))
    if _pool_name(sender) in ("threads", "thread"):
        _load(ctx)


@signals.worker_process_init.connect
def _load_after_fork(**_) -> None:
    _load(context_of(app) or attach(app, WorkerContext.from_settings(settings)))


@signals.worker_ready.connect
def _start_services(sender=None, **_) -> None:
    context_of(app).start_services(app, consumer=sender)


@signals.worker_shutting_down.connect
def _bound_the_drain(how=None, **_) -> None:
    ctx = context_of(app)
    if how == "Warm" and ctx is not None:
        ctx.drain()


@signals.worker_shutdown.connect
def _close(**_) -> None:
    ctx = context_of(app)
    if ctx is not None:
        ctx.close()
