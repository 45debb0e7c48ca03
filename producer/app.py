"""The HTTP edge: `create_app(settings, deps=None)` and the resources it holds.

    lifespan:  Deps (S3 store, verdict store, Celery enqueuer, async Redis) built once per process
               -> tenant registry read (and re-read every TENANT_REFRESH_S), limiter
               -> one DoneListener (pub/sub) for every long poll -> serve -> stop listener, close
    request:   log middleware -> body guard -> auth + rate limit -> route (routes.py) -> Submitter / poll -> JSON

Tests pass `deps` (Deps.with_twins: a MemoryObjectStore and a list Enqueuer on the real Redis);
`uvicorn --factory producer.app:create_app_from_env` reads the environment once per process.
This module, like all of producer/, must not import torch.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from producer import errors, openapi, webhooks
from producer.limits import Limiter
from producer.poll import DoneListener
from producer.review.desk import Desk
from producer.review.routes import router as review_router
from producer.routes import router
from producer.submit import CeleryEnqueuer, Enqueuer, ListEnqueuer, Submitter
from producer.tenants import KeyUseRecorder, TenantRegistry, TenantStore
from workers.audit.signing import review_signer_from_settings
from workers.core import telemetry
from workers.core.errors import StorageError, TransientError
from workers.core.imaging import Limits
from workers.core.logging import configure_logging, get_logger
from workers.core.review_queue import ReviewQueue
from workers.core.settings import DEV_KEY_HMAC_SECRET, Settings
from workers.core.storage import MemoryObjectStore, ObjectStore, S3ObjectStore
from workers.core.transport import check_tls
from workers.core.verdict_store import VerdictStore

log = get_logger("producer.app")
QUIET_PATHS = ("/healthz", "/readyz")  # probes log at debug level
DOCS_STATIC = "/docs/static"  # Swagger UI's and ReDoc's files (producer/openapi.py)


@dataclass
class Deps:
    """Everything the edge talks to. One instance per process, built in the lifespan."""

    objects: ObjectStore
    verdicts: VerdictStore
    enqueuer: Enqueuer
    aredis: Any  # redis.asyncio.Redis, for the DoneListener's pub/sub

    @classmethod
    def from_settings(cls, settings: Settings) -> Deps:
        return cls(S3ObjectStore.from_settings(settings), VerdictStore.from_settings(settings),
                   CeleryEnqueuer.from_settings(settings), _async_redis(settings.redis_url))

    @classmethod
    def with_twins(cls, settings: Settings) -> Deps:
        """In-memory S3 and queue, real Redis at settings.redis_url (unit tests, local poking)."""
        return cls(MemoryObjectStore(bucket=settings.s3_bucket), VerdictStore.from_settings(settings),
                   ListEnqueuer(), _async_redis(settings.redis_url))

    async def aclose(self) -> None:
        self.enqueuer.close()
        self.verdicts.r.close()
        await self.aredis.aclose()


async def _start_registry(settings: Settings, objects: ObjectStore) -> tuple[TenantRegistry, asyncio.Task]:
    """Read the tenant registry once (S3 down: registry keys get 503 until a re-read works), then keep
    re-reading it every tenant_refresh_s in the background."""
    if settings.key_hmac_secret == DEV_KEY_HMAC_SECRET:
        log.warning("key_hmac_secret_is_the_dev_default", variable="TENDERSCAN_KEY_HMAC_SECRET")
    registry = TenantRegistry(TenantStore(objects), settings.key_hmac_secret, settings.tenant_refresh_s)
    try:
        await run_in_threadpool(registry.refresh)
    except (TransientError, StorageError) as exc:
        log.warning("tenant_registry_unread", error=type(exc).__name__)
    return registry, asyncio.create_task(registry.run(), name="tenant-registry")


def _async_redis(url: str):
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)


def create_app(settings: Settings, deps: Deps | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        built = deps is None
        app.state.deps = await run_in_threadpool(Deps.from_settings, settings) if built else deps
        app.state.submitter = Submitter(app.state.deps.objects, app.state.deps.verdicts, app.state.deps.enqueuer,
                                        Limits.from_settings(settings), settings.idempotency_ttl_s,
                                        scans_per_message=settings.scans_per_message)
        queue_gauges = telemetry.QueueCollector(app.state.deps.verdicts.r)  # read at scrape time
        app.state.metrics_registry.register(queue_gauges)
        review_gauges = telemetry.ReviewQueueCollector(app.state.deps.verdicts.r)  # per tenant, at scrape time
        app.state.metrics_registry.register(review_gauges)
        app.state.tenants, refresher = await _start_registry(settings, app.state.deps.objects)
        app.state.limiter = Limiter(app.state.deps.verdicts.r, settings.in_flight_ttl_s)
        app.state.key_use = KeyUseRecorder(app.state.deps.verdicts.r)
        app.state.reviews = ReviewQueue.from_settings(app.state.deps.verdicts.r, settings)
        app.state.review_desk = Desk(app.state.reviews, app.state.deps.verdicts, app.state.deps.objects,
                                     review_signer_from_settings(settings), settings.review_sla_s,
                                     app.state.review_metrics)
        app.state.listener = DoneListener(app.state.deps.aredis)
        await app.state.listener.start()
        log.info("api_started", bucket=app.state.deps.objects.bucket, tenants=len(set(settings.api_keys.values())),
                 registry_tenants=len(app.state.tenants.snapshot.limits) if app.state.tenants.snapshot else None)
        try:
            yield
        finally:
            refresher.cancel()
            with suppress(asyncio.CancelledError):
                await refresher
            await app.state.listener.stop()
            app.state.metrics_registry.unregister(queue_gauges)
            app.state.metrics_registry.unregister(review_gauges)
            if built:
                await app.state.deps.aclose()
            log.info("api_stopped")

    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from this app, not a CDN
    app = FastAPIOffline(title="tenderscan", version="1", lifespan=lifespan, static_url=DOCS_STATIC,
                         swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
                         description="Counterfeit-banknote detection. POST a scan, poll (or long-poll) its verdict.")
    app.state.settings = settings
    app.state.metrics_registry = telemetry.api_registry()
    app.state.review_metrics = telemetry.ReviewMetrics(app.state.metrics_registry)  # the console's counters
    app.include_router(router)
    app.include_router(review_router)  # the review console (producer/review/, docs/REVIEW.md)
    for exc_type, handler in errors.HANDLERS:
        app.add_exception_handler(exc_type, handler)
    app.include_router(webhooks.router)  # /v1/webhooks: a tenant's own endpoints (producer/webhooks.py)
    app.add_middleware(BodyGuard, timeout_s=settings.body_timeout_s,
                       aborted=telemetry.requests_aborted(app.state.metrics_registry))
    app.add_middleware(RequestLog)
    openapi.install(app)
    return app


class BodyGuard:
    """A request body arrives whole within `timeout_s` of the request's start, or the client is gone.

    Wraps `receive` while the body is being read (once it is complete, later receives, e.g. a long
    poll listening for the disconnect, pass untouched):
        slower than timeout_s     ApiError 408 `request_timeout` (Connection: close) raised to the reader,
                                  answered by the usual handler; event `request_timeout`
        client gone mid-body      the reader gets Starlette's ClientDisconnect, answered by
                                  errors.handle_disconnect (499, nothing sent); event `client_disconnected`
    Both are counted in tenderscan_requests_aborted_total{reason}. Without this, a disconnect was an
    `unhandled_error` 500 with a traceback, and a body trickled at 1 byte per 100 ms held its request
    and connection open for as long as the client liked.
    """

    def __init__(self, app, timeout_s: float, aborted) -> None:
        self.app, self.timeout_s, self.aborted = app, timeout_s, aborted

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s
        body_done = False

        async def receive_in_time():
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                body_done = True
                self._count(scope, errors.REQUEST_TIMEOUT, timeout_s=self.timeout_s)
                raise errors.request_timeout(self.timeout_s) from None
            if message["type"] == "http.disconnect":
                body_done = True
                self._count(scope, errors.CLIENT_DISCONNECTED)
            elif not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, receive_in_time, send)

    def _count(self, scope, reason: str, **fields) -> None:
        self.aborted.labels(reason=reason).inc()
        log.info(reason, method=scope["method"], path=scope["path"], **fields)


class RequestLog:
    """One `request` event per request: no bodies, keys or query strings.

    A plain ASGI middleware: Starlette's `app.middleware("http")` (BaseHTTPMiddleware) runs every
    request's app in a task of its own and streams the response through memory channels, which the
    API paid for on each submit and poll. The routes leave tenant, scan_id and reason in
    request.state, which lives in the scope, where this reads them once the response is sent.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            request = Request(scope)
            emit = log.debug if request.url.path in QUIET_PATHS else log.info
            emit("request", method=request.method, path=request.url.path, status=status,
                 ms=round((time.perf_counter() - start) * 1000, 1),
                 tenant=getattr(request.state, "tenant", None), scan_id=getattr(request.state, "scan_id", None),
                 reason=getattr(request.state, "reason", None))


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (`tenderscan api`): settings read once, here, at the entry point."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)
    check_tls(settings)  # a wrong CA stops the API at start, naming the variable (workers/core/transport.py)
    return create_app(settings)
