"""A tenant's own webhook endpoints over the API (docs/WEBHOOKS.md): thin adapters over
workers/webhooks, scoped to the caller's key, so one tenant never sees another's endpoints.

    POST   /v1/webhooks                      {url, description?} -> 201 the endpoint and its secret (once)
    GET    /v1/webhooks                      the tenant's endpoints, with health (never a secret)
    POST   /v1/webhooks/{id}/rotate          a new secret (once); the old one signs for the overlap
    POST   /v1/webhooks/{id}/enable          re-enable; parked deliveries go out again
    POST   /v1/webhooks/{id}/test            a webhook.test event -> 202 its msg id
    GET    /v1/webhooks/{id}/deliveries      the delivery log, newest first
    DELETE /v1/webhooks/{id}                 remove the endpoint

An unknown id, or another tenant's, is 404 `not_found`; a bad URL is 400 `bad_request`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from producer.errors import bad_request, not_found
from producer.openapi import errors
from producer.routes import require_tenant
from workers.core.enums import WebhookEvent
from workers.webhooks.addresses import parse_allow
from workers.webhooks.endpoints import Endpoint, EndpointError, EndpointStore
from workers.webhooks.events import emit
from workers.webhooks.outbox import Outbox

router = APIRouter()
EndpointId = Path(pattern=r"^ep_[0-9a-f]{16}$", description="the id POST /v1/webhooks answered")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Body):
    """POST /v1/webhooks."""

    url: str = Field(max_length=2048, description="http(s) URL the events are POSTed to; its host must resolve to "
                                                  "public addresses (docs/WEBHOOKS.md)")
    description: str = Field("", max_length=200)


class WebhookSecret(_Body):
    """A new endpoint, or a rotation: the only answers that carry a secret."""

    id: str
    url: str
    secret: str = Field(description="whsec_...: verify deliveries with it; shown once")


class WebhookView(_Body):
    id: str
    url: str
    created: str
    description: str
    health: str = Field(description="ok | failing | disabled")
    failing_since: float | None = None
    parked: int = Field(description="deliveries waiting for the endpoint to be enabled")
    signing_secrets: int = Field(description="2 during a rotation's overlap")


class WebhookList(_Body):
    endpoints: list[WebhookView]


class WebhookDone(_Body):
    id: str
    released: int | None = Field(None, description="enable: parked deliveries now due")
    removed: bool | None = None


class WebhookTest(_Body):
    msg_id: str = Field(description="the event's webhook-id")


class Delivery(_Body):
    at: str
    msg_id: str
    attempt: int
    outcome: str
    type: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    reason: str | None = None
    detail: str | None = None
    next_at: float | None = None


class DeliveryLog(_Body):
    deliveries: list[Delivery]


def _stores(request: Request) -> tuple[EndpointStore, Outbox]:
    r, settings = request.app.state.deps.verdicts.r, request.app.state.settings
    return EndpointStore(r, parse_allow(settings.webhook_allow_cidrs)), Outbox(r, settings.webhook_retention_s, settings.webhook_lease_s)


async def _call(fn, *args) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except EndpointError as exc:
        raise (not_found() if "has no webhook endpoint" in str(exc) else bad_request(str(exc))) from None


def _view(ep: Endpoint, state: dict, now: float) -> dict:
    health = "disabled" if "disabled_at" in state else "failing" if "failing_since" in state else "ok"
    return {"id": ep.id, "url": ep.url, "created": ep.created, "description": ep.description, "health": health,
            "failing_since": state.get("failing_since"), "parked": state["parked"],
            "signing_secrets": len(ep.signing_secrets(now))}


@router.post("/v1/webhooks", status_code=201, summary="Add a webhook endpoint (its secret is answered once)",
             response_model=None, responses={201: {"model": WebhookSecret, "description": "the endpoint"},
                                             **errors(400, 401, 429, 500, 503)})
async def add_webhook(request: Request, body: WebhookCreate, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, _ = _stores(request)
    ep = await _call(endpoints.add, tenant, body.url, body.description)
    return {"id": ep.id, "url": ep.url, "secret": ep.secrets[0].value}


@router.get("/v1/webhooks", summary="The tenant's webhook endpoints", response_model=None,
            responses={200: {"model": WebhookList, "description": "endpoints, never a secret"},
                       **errors(400, 401, 429, 500, 503)})
async def list_webhooks(request: Request, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, outbox = _stores(request)

    def views() -> list[dict]:
        now = time.time()
        return [_view(ep, outbox.state(tenant, ep.id), now) for ep in endpoints.list(tenant)]
    return {"endpoints": await _call(views)}


@router.post("/v1/webhooks/{endpoint_id}/rotate", summary="A new signing secret (answered once)",
             response_model=None, responses={200: {"model": WebhookSecret, "description": "the new secret"},
                                             **errors(400, 401, 404, 429, 500, 503)})
async def rotate_webhook(request: Request, endpoint_id: str = EndpointId, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, _ = _stores(request)
    ep = await _call(endpoints.rotate, tenant, endpoint_id, request.app.state.settings.webhook_rotation_overlap_s,
                     time.time())
    return {"id": ep.id, "url": ep.url, "secret": ep.secrets[0].value}


@router.post("/v1/webhooks/{endpoint_id}/enable", summary="Re-enable a disabled endpoint", response_model=None,
             responses={200: {"model": WebhookDone, "description": "`released`: parked deliveries now due"},
                        **errors(400, 401, 404, 429, 500, 503)})
async def enable_webhook(request: Request, endpoint_id: str = EndpointId, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, outbox = _stores(request)
    await _call(endpoints.get, tenant, endpoint_id)
    return {"id": endpoint_id, "released": await _call(outbox.enable, tenant, endpoint_id, time.time())}


@router.post("/v1/webhooks/{endpoint_id}/test", status_code=202, summary="Send a webhook.test event",
             response_model=None, responses={202: {"model": WebhookTest, "description": "scheduled"},
                                             **errors(400, 401, 404, 429, 500, 503)})
async def send_test_event(request: Request, endpoint_id: str = EndpointId, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, _ = _stores(request)
    await _call(endpoints.get, tenant, endpoint_id)
    msg_id = await _call(emit, endpoints.r, tenant, WebhookEvent.TEST, {"endpoint_id": endpoint_id}, None,
                         request.app.state.settings.webhook_retention_s, endpoint_id)
    if msg_id is None:  # removed between the two calls
        raise not_found()
    return {"msg_id": msg_id}


@router.get("/v1/webhooks/{endpoint_id}/deliveries", summary="The endpoint's delivery log, newest first",
            response_model=None, responses={200: {"model": DeliveryLog, "description": "the log"},
                                            **errors(400, 401, 404, 429, 500, 503)})
async def webhook_deliveries(request: Request, endpoint_id: str = EndpointId,
                             limit: int = Query(50, ge=1, le=1000, description="newest records to answer"),
                             tenant: str = Depends(require_tenant)) -> dict:
    endpoints, outbox = _stores(request)
    await _call(endpoints.get, tenant, endpoint_id)
    return {"deliveries": await _call(outbox.log, tenant, endpoint_id, limit)}


@router.delete("/v1/webhooks/{endpoint_id}", summary="Remove a webhook endpoint", response_model=None,
               responses={200: {"model": WebhookDone, "description": "removed"},
                          **errors(400, 401, 404, 429, 500, 503)})
async def remove_webhook(request: Request, endpoint_id: str = EndpointId, tenant: str = Depends(require_tenant)) -> dict:
    endpoints, _ = _stores(request)
    await _call(endpoints.remove, tenant, endpoint_id)
    return {"id": endpoint_id, "removed": True}

