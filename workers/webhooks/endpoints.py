"""A tenant's webhook endpoints and their signing secrets, in Redis (keys.webhook_endpoints_key).

An endpoint is a URL and its secrets, newest first. `rotate` puts a new secret first and keeps the
previous one signing until `until` (the overlap window), so a back-end can deploy the new secret
while deliveries still verify with the old one. The secrets are stored as given: HMAC signing needs
them, so Redis must be treated as holding secrets (docs/WEBHOOKS.md).

The endpoint's health (failing since, disabled at) lives apart, in outbox.py's state hash, so the
deliverer never rewrites this record and a concurrent `add` or `rotate` never loses its update.
"""

from __future__ import annotations

import json
import secrets as _secrets
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit

import redis

from workers.core import clock, keys
from workers.core.errors import StoreUnavailable, TenderscanError
from workers.webhooks.addresses import Network, refusal
from workers.webhooks.signing import new_secret


class EndpointError(TenderscanError):
    """A bad URL, or no such endpoint: the caller's mistake, shown to them (CLI exit 1, API 4xx)."""


@dataclass(frozen=True)
class Secret:
    value: str  # whsec_...
    until: float | None = None  # unix s after which it no longer signs; None: the current secret


@dataclass(frozen=True)
class Endpoint:
    id: str  # ep_ + 16 hex
    tenant: str
    url: str
    created: str  # clock format
    secrets: tuple[Secret, ...]  # newest first
    description: str = ""

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a delivery made at `now`: the current one and any still in overlap."""
        return [s.value for s in self.secrets if s.until is None or s.until > now]

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str) -> Endpoint:
        data = json.loads(raw)
        return cls(**{**data, "secrets": tuple(Secret(**s) for s in data["secrets"])})


def check_url(url: str, allow: tuple[Network, ...] = ()) -> str:
    """A URL the deliverer could use. An IP literal the SSRF rules refuse is refused now, for quick
    feedback; a host name is judged at each delivery, when it resolves (sender.py)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise EndpointError(f"{url!r}: bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise EndpointError(f"{url!r}: a webhook URL is http(s)://host[:port]/path, without credentials")
    try:
        why = refusal(parts.hostname, allow)
    except ValueError:  # a name, not an address
        why = None
    if why:
        raise EndpointError(f"{url!r}: {parts.hostname} is a {why} address; receivers must be public "
                            "(docs/WEBHOOKS.md)")
    return url


class EndpointStore:
    def __init__(self, client: redis.Redis, allow: tuple[Network, ...] = ()) -> None:
        self.r = client
        self.allow = allow  # settings.webhook_allow_cidrs: addresses a receiver may have after all

    def add(self, tenant: str, url: str, description: str = "") -> Endpoint:
        ep = Endpoint("ep_" + _secrets.token_hex(8), tenant, check_url(url, self.allow), clock.utcnow(),
                      (Secret(new_secret()),), description)
        self._save(ep)
        return ep

    def get(self, tenant: str, endpoint_id: str) -> Endpoint:
        try:
            raw = self.r.hget(keys.webhook_endpoints_key(tenant), endpoint_id)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable ({type(exc).__name__})") from None
        if raw is None:
            raise EndpointError(f"tenant {tenant!r} has no webhook endpoint {endpoint_id!r}")
        return Endpoint.decode(raw)

    def list(self, tenant: str) -> list[Endpoint]:
        try:
            raw = self.r.hvals(keys.webhook_endpoints_key(tenant))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable ({type(exc).__name__})") from None
        return sorted((Endpoint.decode(v) for v in raw), key=lambda e: e.created)

    def rotate(self, tenant: str, endpoint_id: str, overlap_s: float, now: float) -> Endpoint:
        """A new current secret; the old current one signs until now + overlap_s; expired ones go."""
        ep = self.get(tenant, endpoint_id)
        kept = [s if s.until is not None else Secret(s.value, now + overlap_s) for s in ep.secrets]
        kept = [s for s in kept if s.until is not None and s.until > now]
        ep = replace(ep, secrets=(Secret(new_secret()), *kept))
        self._save(ep)
        return ep

    def remove(self, tenant: str, endpoint_id: str) -> None:
        self.get(tenant, endpoint_id)
        self.r.hdel(keys.webhook_endpoints_key(tenant), endpoint_id)

    def _save(self, ep: Endpoint) -> None:
        try:
            self.r.hset(keys.webhook_endpoints_key(ep.tenant), ep.id, ep.encode())
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable ({type(exc).__name__})") from None
