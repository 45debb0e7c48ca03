"""Tenants by API key: `Authorization: Bearer <key>` -> tenant id.

Only sha256(key) hex digests live in configuration (settings.api_keys, `tenderscan keyhash`). The
lookup compares the presented digest with EVERY configured digest using hmac.compare_digest and never
stops early, so the answer time does not depend on how much of a digest matched, nor on which entry.
Keys are never logged: the log sees the tenant, or nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from producer.errors import unauthorized


def key_hash(key: str) -> str:
    """The digest configuration stores for `key` (what `tenderscan keyhash` prints)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def tenant_for_key(key: str, api_keys: Mapping[str, str]) -> str | None:
    """The tenant whose key this is, or None. Constant time in the key's content."""
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


def authenticate(authorization: str | None, api_keys: Mapping[str, str]) -> str:
    """Tenant for the header, or ApiError 401 with `WWW-Authenticate: Bearer`."""
    key = bearer_key(authorization)
    if key is None:
        raise unauthorized()
    tenant = tenant_for_key(key, api_keys)
    if tenant is None:
        raise unauthorized("unknown API key")
    return tenant
