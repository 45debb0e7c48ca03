"""The delivery loop: drain the schedule (outbox.py), POST each event signed, settle each attempt.

    tenderscan webhook deliver      runs `Deliverer.run` until SIGTERM/SIGINT, then finishes the
                                    deliveries in hand; as many processes as you like (claims are atomic)
                                    At most `per_endpoint` attempts go to one endpoint at once: a claim
                                    beyond that is handed back untried, so a hanging receiver holds two
                                    threads, not all of them, and other tenants' events go on.

Per claimed delivery (`deliver`):
    event gone (retention passed) or endpoint removed       -> dropped
    endpoint disabled                                       -> parked (until `webhook enable`)
    POST, signed now with every secret still signing (a rotation's overlap sends two signatures)
    2xx                                                     -> delivered; the endpoint is healthy again
    anything else                                           -> the endpoint is failing since its first
        failure; past WEBHOOK_DISABLE_AFTER_S it is disabled and this delivery parked; otherwise
        retried after backoff.py's delay, or given up past WEBHOOK_RETRY_WINDOW_S
Each outcome is one record in the endpoint's delivery log (status, latency, attempt, reason) and
one count in tenderscan_webhook_deliveries{outcome, reason} (served on TENDERSCAN_METRICS_PORT); a
delivered event's lag (its timestamp to the 2xx, retries and outages included) is `lag_ms` in its
record and one observation of tenderscan_webhook_delivery_lag_seconds{type}.

Delivery is at least once: a deliverer killed between the POST and `finish` leaves the claim to its
lease, and the event goes again under the same webhook-id, which is the receiver's dedup key.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import redis
import structlog

from workers.core import clock, telemetry
from workers.core.enums import DeliveryOutcome
from workers.core.errors import TenderscanError
from workers.core.settings import Settings
from workers.webhooks import sender, signing
from workers.webhooks.addresses import Network, parse_allow
from workers.webhooks.backoff import Backoff
from workers.webhooks.endpoints import EndpointError, EndpointStore
from workers.webhooks.outbox import Claim, Outbox

log = structlog.get_logger(__name__)
# A claim handed back because its endpoint already has `per_endpoint` attempts in flight is due again
# this much later: behind whatever else is due now (a hanging endpoint cannot fill every claim), and
# soon enough that a healthy busy endpoint's events wait milliseconds, not a poll interval. It was
# max(1 s, poll_s), and the loop then slept a poll: one endpoint got at most per_endpoint / poll_s
# deliveries a second (4/s by default), measured in docs/WEBHOOKS.md (Benchmark).
RELEASE_S = 0.05


def event_lag_s(event: dict, now: float) -> float | None:
    """Seconds from the stored event's `timestamp` (when it happened) to `now`; None if unreadable."""
    try:
        return now - clock.parse_time(json.loads(event["body"])["timestamp"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class Deliverer:
    outbox: Outbox
    endpoints: EndpointStore
    backoff: Backoff = field(default_factory=Backoff)
    timeout_s: float = 10.0
    disable_after_s: float = 12 * 3600.0
    allow: tuple[Network, ...] = ()
    concurrency: int = 8
    poll_s: float = 0.5
    per_endpoint: int = 2  # attempts in flight to one endpoint: a hanging one holds at most this many threads
    now: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    send: Callable[..., sender.Attempt] = sender.post  # a test may pass a stand-in receiver

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> Deliverer:
        allow = parse_allow(settings.webhook_allow_cidrs)
        return cls(Outbox(client, settings.webhook_retention_s, settings.webhook_lease_s), EndpointStore(client, allow),
                   Backoff.from_settings(settings), settings.webhook_timeout_s, settings.webhook_disable_after_s,
                   allow, settings.webhook_concurrency, settings.webhook_poll_s)

    def deliver(self, claim: Claim) -> DeliveryOutcome:
        now = self.now()
        record = {"at": clock.utcnow(), "msg_id": claim.msg_id, "attempt": claim.attempt}
        event = self.outbox.message(claim.msg_id)
        try:
            endpoint = self.endpoints.get(claim.tenant, claim.endpoint_id)
        except EndpointError:
            endpoint = None
        if event is None or endpoint is None:
            why = "event_expired" if event is None else "endpoint_removed"
            return self._settle(claim, DeliveryOutcome.DROPPED, {**record, "reason": why})
        record["type"] = event["type"]
        if "disabled_at" in self.outbox.state(claim.tenant, claim.endpoint_id):
            return self._settle(claim, DeliveryOutcome.PARKED, {**record, "reason": "endpoint_disabled"})

        body = event["body"].encode()
        headers = signing.headers(endpoint.signing_secrets(now), claim.msg_id, int(now), body)
        attempt = self.send(endpoint.url, body, headers, self.timeout_s, self.allow)
        record.update(status=attempt.status, latency_ms=attempt.latency_ms)
        if attempt.ok:
            self.outbox.succeeded(claim.tenant, claim.endpoint_id)
            lag = event_lag_s(event, self.now())
            if lag is not None:
                record["lag_ms"] = round(1000 * lag, 1)
                telemetry.observe_webhook_lag(event["type"], lag)
            return self._settle(claim, DeliveryOutcome.DELIVERED, record)

        record.update(reason=attempt.reason, detail=attempt.detail)
        _, disabled = self.outbox.failing(claim.tenant, claim.endpoint_id, now, self.disable_after_s)
        if disabled:
            log.warning("webhook_endpoint_disabled", tenant=claim.tenant, endpoint=claim.endpoint_id)
            return self._settle(claim, DeliveryOutcome.PARKED, record)
        due = self.backoff.next_due(claim.attempt, claim.first_at, now, self.rand)
        if due is None:
            return self._settle(claim, DeliveryOutcome.GAVE_UP, record)
        record["next_at"] = round(due, 3)
        return self._settle(claim, DeliveryOutcome.RETRYING, record, due)

    def _settle(self, claim: Claim, outcome: DeliveryOutcome, record: dict, due: float | None = None) -> DeliveryOutcome:
        record["outcome"] = str(outcome)
        self.outbox.finish(claim, outcome, record, due)
        telemetry.observe_webhook(record["outcome"], record.get("reason"), record.get("latency_ms"))
        log.info("webhook_delivery", tenant=claim.tenant, endpoint=claim.endpoint_id,
                 **{k: v for k, v in record.items() if k != "at"})
        return outcome

    def _deliver_logged(self, claim: Claim) -> None:
        try:
            self.deliver(claim)
        except Exception as exc:  # noqa: BLE001 - the claim's lease brings it back
            log.warning("webhook_delivery_error", delivery=claim.delivery_id, error=type(exc).__name__,
                        detail=str(exc)[:200])

    def run(self, stop: threading.Event, tick: Callable[[], None] | None = None) -> None:
        """Claim as many due deliveries as there are free threads, until `stop`; then finish those in hand.
        `tick` is called once per turn of the loop (the CLI's liveness heartbeat)."""
        log.info("webhook_deliverer_started", concurrency=self.concurrency)
        inflight: dict[Future, tuple[str, str]] = {}  # attempt -> its endpoint
        busy: Counter[tuple[str, str]] = Counter()  # endpoint -> attempts in flight
        handed_back_until = 0.0  # monotonic time the last claims handed back are due again
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="tenderscan-webhook") as pool:
            while not stop.is_set():
                if tick:
                    tick()
                for f in [f for f in inflight if f.done()]:
                    busy[inflight.pop(f)] -= 1
                free = self.concurrency - len(inflight)
                claims: list[Claim] = []
                released = 0
                if free:
                    try:
                        claims = self.outbox.claim(self.now(), free)
                        for c in claims:
                            endpoint = (c.tenant, c.endpoint_id)
                            if busy[endpoint] >= self.per_endpoint:  # let other endpoints' events by
                                self.outbox.release(c, self.now() + RELEASE_S)
                                released += 1
                                continue
                            busy[endpoint] += 1
                            inflight[pool.submit(self._deliver_logged, c)] = endpoint
                    except TenderscanError as exc:
                        log.warning("webhook_claim_failed", error=type(exc).__name__, detail=str(exc)[:200])
                if released:
                    handed_back_until = time.monotonic() + RELEASE_S
                # what was handed back is due again soon: wait for that, not a whole poll interval
                pause = min(self.poll_s, max(0.0, handed_back_until - time.monotonic()) or self.poll_s)
                if released and inflight:  # a busy endpoint: its next turn comes when one of its attempts ends
                    wait(list(inflight), timeout=pause, return_when=FIRST_COMPLETED)
                elif len(claims) < free or not free:  # nothing more due now: wait for time or a thread
                    if inflight and not free:
                        wait(list(inflight), timeout=pause, return_when=FIRST_COMPLETED)
                    else:
                        stop.wait(pause)
            wait(list(inflight))
        log.info("webhook_deliverer_stopped")
