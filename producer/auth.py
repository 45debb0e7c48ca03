"""Tenants by API key: `Authorization: Bearer <key>` -> Identity(tenant, key_id).

Two sources, one answer shape:

    registry keys   `tsk_...` (producer/tenants.py): checksum first (401 key_malformed, no lookup), then
                    HMAC-SHA256(settings.key_hmac_secret, key) against the cached registry (401
                    unauthorized if unknown, 401 key_revoked if revoked; 503 while the registry was
                    never read). Created, rotated and revoked with `tenderscan tenant`.
    bootstrap keys  anything else: sha256(key) against settings.api_keys (TENDERSCAN_API_KEYS,
                    `tenderscan keyhash`): static keys for the demo, tests, benchmarks and a first
                    operator; revoked by removing them from the configuration.

Both lookups compare the presented digest with EVERY stored digest using hmac.compare_digest and never
stop early, so the answer time does not depend on how much of a digest matched, nor on which entry.
Keys are never logged: the log sees the tenant, or nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from producer.errors import KEY_MALFORMED, KEY_REVOKED, ApiError, unauthorized
from producer.tenants import TenantRegistry, is_well_formed, looks_like_registry_key


@dataclass(frozen=True)
class Identity:
    tenant: str
    key_id: str | None = None  # a registry key's id; None for a bootstrap key


def key_hash(key: str) -> str:
    """The digest TENDERSCAN_API_KEYS stores for a bootstrap key (what `tenderscan keyhash` prints)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def tenant_for_key(key: str, api_keys: Mapping[str, str]) -> str | None:
    """The tenant whose bootstrap key this is, or None. Constant time in the key's content."""
    presented = key_hash(key).encode("ascii")
    found: str | None = None
    for digest, tenant in api_keys.items():
        if hmac.compare_digest(presented, digest.encode("ascii")):
            found = tenant  # keep looping: no early exit
    return found


def bearer_key(authorization: str | None) -> str | None:
    """The key from an `Authorization: Bearer <key>` header, or None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > 512:
        return None
    return key


def identify(authorization: str | None, api_keys: Mapping[str, str],
             registry: TenantRegistry | None = None) -> Identity:
    """Identity for the header, or ApiError 401 (`WWW-Authenticate: Bearer`); 503 if the registry is unread."""
    key = bearer_key(authorization)
    if key is None:
        raise unauthorized()
    if looks_like_registry_key(key):
        if not is_well_formed(key):
            raise ApiError(401, KEY_MALFORMED, "the key's checksum does not match: mistyped or truncated",
                           {"WWW-Authenticate": "Bearer"})
        match = registry.identify(key) if registry is not None else None  # RegistryUnavailable -> 503
        if match is None:
            raise unauthorized("unknown API key")
        if match.revoked:
            raise ApiError(401, KEY_REVOKED, "this API key was revoked", {"WWW-Authenticate": "Bearer"})
        return Identity(match.tenant, match.key_id)
    tenant = tenant_for_key(key, api_keys)
    if tenant is None:
        raise unauthorized("unknown API key")
    return Identity(tenant)


def authenticate(authorization: str | None, api_keys: Mapping[str, str],
                 registry: TenantRegistry | None = None) -> str:
    """The tenant for the header (see `identify`)."""
    return identify(authorization, api_keys, registry).tenant
