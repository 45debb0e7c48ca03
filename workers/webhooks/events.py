"""Emit webhook events: the one function anyone calls to tell a tenant's endpoints something happened.

    emit(redis, tenant, event_type, data, event_id=None)   one event, e.g. the review console's
                                                           scan.reviewed; returns its id, or None when
                                                           the tenant has no endpoint (nothing stored)
    emit_completed(outbox, saved)                          scan.completed for each stored verdict (the
                                                           worker's publish stage); never raises
    emit_reviewed(redis, tenant, scan_id, reviewed_at, data)  scan.reviewed for the review console's hook
                                                           (after the signed review record); never raises

An event id is `msg_` + random hex unless given. scan.completed's is derived from the scan
(`msg_{scan_id}_completed`), so a redelivered scan, whose publish runs again, emits nothing new: the
outbox stores an event id once (SET NX). scan.reviewed's is derived from the scan and the review's
time (`msg_{scan_id}_reviewed_{digits of reviewed_at}`): a review recorded twice is one event, a
review taken back (undo) and made again is a second one.

Emitting only schedules: the POST happens in the deliverer process (`tenderscan webhook deliver`),
so a slow or broken receiver can never hold up a verdict.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis
import structlog

from workers.core import clock
from workers.core.enums import WebhookEvent as EventType
from workers.core.schemas import Verdict, WebhookEvent, decode_json
from workers.core.settings import Settings
from workers.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)


def new_event_id() -> str:
    return "msg_" + secrets.token_hex(16)


def completed_event_id(scan_id: str) -> str:
    return f"msg_{scan_id}_completed"


def emit(client: redis.Redis, tenant: str, event_type: str, data: dict[str, Any], event_id: str | None = None,
         retention_s: int | None = None, endpoint_id: str = "") -> str | None:
    """Schedule one event for each of the tenant's endpoints (or the one named). The event's id, or
    None when no endpoint takes it (none configured, or this id was emitted before)."""
    event = WebhookEvent(event_id or new_event_id(), tenant, str(event_type), clock.utcnow(), data)
    outbox = Outbox(client, retention_s or Settings.default("webhook_retention_s"))
    (scheduled,) = outbox.emit([event], time.time(), endpoint_id)
    return event.id if scheduled else None


def emit_completed(outbox: Outbox | None, saved: Sequence[tuple[Verdict, str]]) -> int:
    """scan.completed for each (winner, JSON Redis stored) of a publish, in one round trip. Never
    raises: a failure is logged (`webhook_emit_failed`) and the verdict goes on. Returns how many
    deliveries were scheduled. A tenant without endpoints costs one EXISTS, no event is built for it."""
    if outbox is None or not saved:
        return 0
    try:
        listening = outbox.with_endpoints({v.tenant for v, _ in saved})  # most tenants: none, and we stop here
        events = [WebhookEvent(completed_event_id(v.scan_id), v.tenant, EventType.SCAN_COMPLETED,
                               v.timestamps.completed or clock.utcnow(), decode_json(stored, "verdict"))
                  for v, stored in saved if v.tenant in listening]
        return sum(outbox.emit(events, time.time())) if events else 0
    except Exception as exc:  # noqa: BLE001 - webhooks must never fail a verdict
        log.warning("webhook_emit_failed", scans=len(saved), error=type(exc).__name__, detail=str(exc)[:200])
        return 0


def reviewed_event_id(scan_id: str, reviewed_at: str) -> str:
    return f"msg_{scan_id}_reviewed_{''.join(c for c in reviewed_at if c.isdigit())}"


def emit_reviewed(client: redis.Redis, tenant: str, scan_id: str, reviewed_at: str, data: dict[str, Any],
                  retention_s: int | None = None) -> str | None:
    """scan.reviewed, for the review console to call once a review is recorded. Never raises into the
    reviewer's request: a failure is logged (`webhook_emit_failed`). The event id, or None."""
    try:
        return emit(client, tenant, EventType.SCAN_REVIEWED, data, reviewed_event_id(scan_id, reviewed_at),
                    retention_s)
    except Exception as exc:  # noqa: BLE001 - a webhook must never fail a review
        log.warning("webhook_emit_failed", scan_id=scan_id, error=type(exc).__name__, detail=str(exc)[:200])
        return None
