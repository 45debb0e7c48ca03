"""The durable webhook schedule in Redis: what is due, what was tried, what is parked, what happened.

    emit       event -> ts:wh:msg:{id} (SET NX: emitting twice is harmless) and, per endpoint of the
               tenant, a delivery "{tenant}|{ep}|{id}" in the ts:wh:due zset, due now
    claim      the due deliveries, each pushed `lease_s` ahead in the same script and its attempt
               counted: a deliverer that dies mid-POST loses nothing, the lease brings it back
    release    a claim handed back untried (its endpoint already has enough in flight)
    finish     delivered / gave up / dropped: out of the schedule; retrying: due again later;
               parked: into the endpoint's parked zset until `enable`; each writes a delivery log record
    failing    an endpoint's first failure since its last success; past `disable_after_s` it is disabled
    enable     clears the endpoint's health and puts its parked deliveries back, due now, with a fresh
               retry window (the same webhook-id: it is the same event)

Every step is one script or one transaction, so two deliverers (or a restart) never deliver one
claim twice at once, and a restart finds the schedule as it was. Redis errors become StoreUnavailable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from workers.core import keys
from workers.core.enums import DeliveryOutcome
from workers.core.errors import StoreUnavailable
from workers.core.schemas import WebhookEvent

# KEYS: per event two: the tenant's endpoints hash, the event key; then the due zset. ARGV: retention s,
# now, then per event four: the stored JSON, the tenant, the event id, one endpoint id or "" for all.
# Returns per event the number of deliveries scheduled (0: a repeat emit, or no endpoint).
_EMIT = """
local due, n = KEYS[#KEYS], (#KEYS - 1) / 2
local out = {}
for i = 0, n - 1 do
  local a = 3 + 4 * i
  local eps
  if ARGV[a + 3] ~= '' then
    eps = redis.call('HEXISTS', KEYS[2 * i + 1], ARGV[a + 3]) == 1 and {ARGV[a + 3]} or {}
  else
    eps = redis.call('HKEYS', KEYS[2 * i + 1])
  end
  out[i + 1] = 0
  if #eps > 0 and redis.call('SET', KEYS[2 * i + 2], ARGV[a], 'NX', 'EX', ARGV[1]) then
    for _, ep in ipairs(eps) do
      redis.call('ZADD', due, ARGV[2], ARGV[a + 1] .. '|' .. ep .. '|' .. ARGV[a + 2])
    end
    out[i + 1] = #eps
  end
end
return out
"""

# KEYS: the due zset. ARGV: now, lease s, most to claim, retention s, the try-key prefix.
# Returns per claimed delivery {id, attempt number, first attempt (unix s)}.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
  local t = ARGV[5] .. id
  local n = redis.call('HINCRBY', t, 'attempts', 1)
  redis.call('HSETNX', t, 'first_at', ARGV[1])
  redis.call('EXPIRE', t, ARGV[4])
  out[#out + 1] = {id, n, redis.call('HGET', t, 'first_at')}
end
return out
"""

# KEYS: the endpoint's state hash. ARGV: now, disable after s. Returns {failing_since, disabled_at or ''}.
_FAILING = """
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[1])
local since = redis.call('HGET', KEYS[1], 'failing_since')
if tonumber(ARGV[1]) - tonumber(since) >= tonumber(ARGV[2]) then
  redis.call('HSETNX', KEYS[1], 'disabled_at', ARGV[1])
end
return {since, redis.call('HGET', KEYS[1], 'disabled_at') or ''}
"""

# KEYS: the endpoint's state hash, its parked zset, the due zset. ARGV: now, the try-key prefix.
_ENABLE = """
redis.call('HDEL', KEYS[1], 'failing_since', 'disabled_at')
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[3], ARGV[1], id)
  redis.call('DEL', ARGV[2] .. id)
end
redis.call('DEL', KEYS[2])
return #ids
"""


@dataclass(frozen=True)
class Claim:
    """One delivery taken from the schedule: its id's parts and its attempt count."""

    delivery_id: str
    tenant: str
    endpoint_id: str
    msg_id: str
    attempt: int  # 1 = the first try
    first_at: float  # unix s of the first try


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis unavailable ({type(exc).__name__})") from None


class Outbox:
    def __init__(self, client: redis.Redis, retention_s: int = 7 * 24 * 3600, lease_s: int = 120) -> None:
        self.r = client
        self.retention_s = retention_s
        self.lease_s = lease_s
        self._emit = client.register_script(_EMIT)
        self._claim = client.register_script(_CLAIM)
        self._failing = client.register_script(_FAILING)
        self._enable = client.register_script(_ENABLE)

    # --- the producing side ---------------------------------------------------------------------
    def emit(self, events: Sequence[WebhookEvent], now: float, endpoint_id: str = "") -> list[int]:
        """Schedule each event for its tenant's endpoints (or the one named); per event, how many."""
        if not events:
            return []
        keys_: list[str] = []
        argv: list[object] = [self.retention_s, now]
        for e in events:
            keys_ += [keys.webhook_endpoints_key(e.tenant), keys.webhook_message_key(e.id)]
            stored = json.dumps({"tenant": e.tenant, "type": e.type, "body": e.body()}, separators=(",", ":"))
            argv += [stored, e.tenant, e.id, endpoint_id]
        with _translate():
            return [int(n) for n in self._emit(keys=[*keys_, keys.WEBHOOK_DUE_KEY], args=argv)]

    def with_endpoints(self, tenants: set[str]) -> set[str]:
        """Which of these tenants have an endpoint (one round trip): the rest need no event built."""
        ordered = sorted(tenants)
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for tenant in ordered:
                pipe.exists(keys.webhook_endpoints_key(tenant))
            return {t for t, n in zip(ordered, pipe.execute(), strict=True) if n}

    # --- the deliverer's side -------------------------------------------------------------------
    def claim(self, now: float, limit: int) -> list[Claim]:
        with _translate():
            rows = self._claim(keys=[keys.WEBHOOK_DUE_KEY],
                               args=[now, self.lease_s, limit, self.retention_s, keys.webhook_try_key("")])
        out = []
        for delivery_id, attempt, first_at in rows:
            tenant, endpoint_id, msg_id = delivery_id.split("|")
            out.append(Claim(delivery_id, tenant, endpoint_id, msg_id, int(attempt), float(first_at)))
        return out

    def release(self, claim: Claim, due: float) -> None:
        """Hand a claim back untried (its endpoint has enough in flight): due at `due`, no attempt spent."""
        with _translate():
            pipe = self.r.pipeline(transaction=True)
            pipe.zadd(keys.WEBHOOK_DUE_KEY, {claim.delivery_id: due}, xx=True)
            pipe.hincrby(keys.webhook_try_key(claim.delivery_id), "attempts", -1)
            pipe.execute()

    def message(self, msg_id: str) -> dict | None:
        """{tenant, type, body} of a stored event, or None once retention has passed."""
        with _translate():
            raw = self.r.get(keys.webhook_message_key(msg_id))
        return json.loads(raw) if raw else None

    def finish(self, claim: Claim, outcome: DeliveryOutcome, record: dict, next_due: float | None = None) -> None:
        """Settle a claim and write its delivery log record (one transaction)."""
        log = keys.webhook_log_key(claim.tenant, claim.endpoint_id)
        with _translate():
            pipe = self.r.pipeline(transaction=True)
            if outcome == DeliveryOutcome.RETRYING:
                pipe.zadd(keys.WEBHOOK_DUE_KEY, {claim.delivery_id: next_due}, xx=True)
            else:
                pipe.zrem(keys.WEBHOOK_DUE_KEY, claim.delivery_id)
                if outcome == DeliveryOutcome.PARKED:
                    parked = keys.webhook_parked_key(claim.tenant, claim.endpoint_id)
                    pipe.zadd(parked, {claim.delivery_id: claim.first_at})
                    pipe.expire(parked, self.retention_s)
                else:
                    pipe.delete(keys.webhook_try_key(claim.delivery_id))
            pipe.lpush(log, json.dumps(record, separators=(",", ":")))
            pipe.ltrim(log, 0, keys.WEBHOOK_LOG_MAX - 1)
            pipe.expire(log, self.retention_s)
            pipe.execute()

    # --- the endpoint's health ------------------------------------------------------------------
    def failing(self, tenant: str, endpoint_id: str, now: float, disable_after_s: float) -> tuple[float, bool]:
        """Record a failure: (failing since, disabled now)."""
        with _translate():
            since, disabled = self._failing(keys=[keys.webhook_state_key(tenant, endpoint_id)],
                                            args=[now, disable_after_s])
        return float(since), bool(disabled)

    def succeeded(self, tenant: str, endpoint_id: str) -> None:
        with _translate():
            self.r.hdel(keys.webhook_state_key(tenant, endpoint_id), "failing_since")

    def state(self, tenant: str, endpoint_id: str) -> dict:
        """failing_since, disabled_at (unix s, when set) and how many deliveries are parked."""
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.webhook_state_key(tenant, endpoint_id))
            pipe.zcard(keys.webhook_parked_key(tenant, endpoint_id))
            health, parked = pipe.execute()
        return {**{k: float(v) for k, v in health.items()}, "parked": parked}

    def enable(self, tenant: str, endpoint_id: str, now: float) -> int:
        """Re-enable an endpoint; its parked deliveries are due now. Returns how many."""
        with _translate():
            return int(self._enable(keys=[keys.webhook_state_key(tenant, endpoint_id),
                                          keys.webhook_parked_key(tenant, endpoint_id), keys.WEBHOOK_DUE_KEY],
                                    args=[now, keys.webhook_try_key("")]))

    def log(self, tenant: str, endpoint_id: str, limit: int = 50) -> list[dict]:
        """The endpoint's delivery log, newest first."""
        with _translate():
            raw = self.r.lrange(keys.webhook_log_key(tenant, endpoint_id), 0, limit - 1)
        return [json.loads(r) for r in raw]

    def pending(self) -> int:
        """Deliveries in the schedule (due or leased), all tenants."""
        with _translate():
            return int(self.r.zcard(keys.WEBHOOK_DUE_KEY))
