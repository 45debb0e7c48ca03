"""Per-tenant limits at the edge: request rate, scans in flight, body and pixel caps.

    rate        a token bucket per tenant in Redis (ts:rate:{tenant}), one Lua script, so every API
                replica draws from the same bucket: `burst` tokens, refilled at `rate_per_s`. Every
                authenticated request costs one token (a batch is one request).  429 rate_limited,
                Retry-After = seconds until the next token.
    in flight   ts:inflight:{tenant}, a ZSET of scan ids scored by acceptance time. VerdictStore adds
                a scan when it records it and removes it in the same Lua script that stores its verdict,
                so a crashed worker leaks nothing: the redelivery's verdict removes it, and an entry
                whose scan was lost without any verdict ages out after settings.in_flight_ttl_s.
                Admission is checked before the body is read (and for a batch, again with its size);
                429 too_many_in_flight. It is a soft limit: concurrent requests of one tenant that all
                passed the check may overshoot it by their number.
    body/pixels a tenant's caps may only tighten the global ones (the workers enforce the global ones):
                413 image_too_large, 422 too_many_pixels, as for the global caps.

Redis failures become StoreUnavailable (503 at the edge): without Redis no scan is accepted anyway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis
from starlette.concurrency import run_in_threadpool

from producer.errors import RATE_LIMITED, TOO_MANY_IN_FLIGHT, too_many
from producer.tenants import TenantLimits
from workers.core import keys
from workers.core.errors import StoreUnavailable
from workers.core.imaging import Limits
from workers.core.settings import Settings

IN_FLIGHT_RETRY_AFTER_S = 2  # what a too_many_in_flight answer tells the client to wait

# KEYS: bucket. ARGV: rate per second, burst, cost, now (unix seconds; "" = Redis TIME).
# Returns {1, 0} when the tokens were taken, {0, ms until they would be there} when not.
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local ok, wait_ms = 0, 0
if tokens >= cost then
  tokens, ok = tokens - cost, 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {ok, wait_ms}
"""

# KEYS: in-flight zset. ARGV: oldest score kept. Drops aged-out entries, returns how many are left.
_IN_FLIGHT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True)
class Policy:
    """A tenant's effective limits: its record's overrides over the settings' defaults."""

    rate_per_s: float  # 0 = no rate limit
    burst: int
    max_in_flight: int  # 0 = no limit
    max_body_bytes: int
    max_pixels: int

    @classmethod
    def resolve(cls, settings: Settings, override: TenantLimits | None = None) -> Policy:
        o = override or TenantLimits()

        def pick(value, default):
            return default if value is None else value

        return cls(rate_per_s=float(pick(o.rate_per_s, settings.tenant_rate_per_s)),
                   burst=int(pick(o.burst, settings.tenant_burst)),
                   max_in_flight=int(pick(o.max_in_flight, settings.tenant_max_in_flight)),
                   max_body_bytes=min(pick(o.max_body_bytes, settings.max_body_bytes), settings.max_body_bytes),
                   max_pixels=min(pick(o.max_pixels, settings.max_pixels), settings.max_pixels))

    def image_limits(self, settings: Settings) -> Limits:
        return Limits(self.max_body_bytes, self.max_pixels, settings.min_side, settings.max_side)


class Limiter:
    def __init__(self, client: redis.Redis, in_flight_ttl_s: int) -> None:
        self.r = client
        self.in_flight_ttl_s = in_flight_ttl_s
        self._take = client.register_script(_TAKE)
        self._count = client.register_script(_IN_FLIGHT)

    def take(self, tenant: str, policy: Policy, cost: int = 1, now: float | None = None) -> float:
        """Take `cost` tokens from the tenant's bucket: 0.0 if taken, else seconds until they would be."""
        if policy.rate_per_s <= 0:
            return 0.0
        try:
            ok, wait_ms = self._take(keys=[keys.rate_key(tenant)],
                                     args=[policy.rate_per_s, policy.burst, cost, "" if now is None else repr(now)])
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable for the rate limit ({type(exc).__name__})") from None
        return 0.0 if int(ok) else int(wait_ms) / 1000

    def in_flight(self, tenant: str, now: float | None = None) -> int:
        """Scans accepted without a verdict, after dropping the aged-out ones."""
        oldest = (time.time() if now is None else now) - self.in_flight_ttl_s
        try:
            return int(self._count(keys=[keys.in_flight_key(tenant)], args=[repr(oldest)]))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable for the in-flight count ({type(exc).__name__})") from None

    # --- the edge's checks: raise ApiError 429 --------------------------------------------------------
    def check_rate(self, tenant: str, policy: Policy) -> None:
        wait_s = self.take(tenant, policy)
        if wait_s > 0:
            raise too_many(RATE_LIMITED, f"more than {policy.rate_per_s:g} requests/s (burst {policy.burst})",
                           math.ceil(wait_s))

    def check_in_flight(self, tenant: str, policy: Policy, adding: int = 1) -> None:
        if policy.max_in_flight <= 0:
            return
        now = self.in_flight(tenant)
        if now + adding > policy.max_in_flight:
            raise too_many(TOO_MANY_IN_FLIGHT,
                           f"{now} scans without a verdict yet; limit {policy.max_in_flight}"
                           + (f", this request adds {adding}" if adding > 1 else ""),
                           IN_FLIGHT_RETRY_AFTER_S)


# --- used by the routes -----------------------------------------------------------------------------
def admit_request(state, identity) -> Policy:
    """Called once per authenticated request (in a worker thread): records the key's use, spends one
    token (429 rate_limited), and returns the tenant's effective limits. `state` is app.state."""
    policy = Policy.resolve(state.settings, state.tenants.limits_for(identity.tenant))
    if identity.key_id is not None:
        state.key_use.record(identity.tenant, identity.key_id)
    state.limiter.check_rate(identity.tenant, policy)
    return policy


async def admit_scans(request, tenant: str, adding: int) -> None:
    """429 too_many_in_flight unless `adding` more scans fit in the tenant's in-flight limit."""
    await run_in_threadpool(request.app.state.limiter.check_in_flight, tenant, request.state.policy, adding)
