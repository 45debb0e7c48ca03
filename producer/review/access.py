"""Who may use the review console, and on which tenants' scans.

    reviewer keys   TENDERSCAN_REVIEWER_KEYS: `name@tenant:sha256(key)` (a tenant's reviewer: that tenant's
                    scans only) or `name@*:sha256(key)` (an auditor: every tenant's). Keys of their own,
                    never a tenant's API key: a reviewer's key cannot submit scans, an API key cannot
                    open the console. Checked like bootstrap API keys (producer/auth.py, constant time).
    sessions        POST /review/login with the key -> a random token in an HttpOnly, SameSite=Strict
                    cookie; Redis keeps sha256(token) -> the reviewer (keys.review_session_key, TTL
                    settings.review_session_ttl_s), so a Redis dump holds no usable cookie.
    scope           every scan the console touches is looked up in the reviewer's tenants only; another
                    tenant's scan is the same 404 as an unknown one (no oracle), as on /v1/scans.
    CSRF            the cookie is SameSite=Strict and every state-changing JSON call must carry the
                    header `X-Tenderscan-Review: 1`, which a cross-site form cannot send.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

from producer.auth import tenant_for_key
from producer.errors import ApiError
from workers.core import keys
from workers.core.verdict_store import _translate

COOKIE = "tenderscan_review"
CSRF_HEADER = "X-Tenderscan-Review"  # must be "1" on every POST of the console's JSON API
ALL_TENANTS = "*"


@dataclass(frozen=True)
class Reviewer:
    name: str
    scope: str  # a tenant id, or "*" (an auditor across tenants)

    @property
    def id(self) -> str:
        """How the reviewer is named in claims and review records: name@scope."""
        return f"{self.name}@{self.scope}"

    @property
    def auditor(self) -> bool:
        return self.scope == ALL_TENANTS

    def may_see(self, tenant: str) -> bool:
        return self.auditor or tenant == self.scope

    @classmethod
    def parse(cls, value: str) -> Reviewer:
        name, _, scope = value.partition("@")
        return cls(name, scope)


def reviewer_for_key(key: str, reviewer_keys: Mapping[str, str]) -> Reviewer | None:
    """The reviewer whose key this is, or None (sha256 compared with every digest, constant time)."""
    if not key or len(key) > 512:
        return None
    found = tenant_for_key(key, reviewer_keys)
    return Reviewer.parse(found) if found else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(r, reviewer: Reviewer, ttl_s: int) -> str:
    """A new session for the reviewer; returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    with _translate():
        r.set(keys.review_session_key(_digest(token)), json.dumps({"reviewer": reviewer.id}), ex=ttl_s)
    return token


def session_reviewer(r, token: str | None) -> Reviewer | None:
    if not token or len(token) > 128:
        return None
    with _translate():
        raw = r.get(keys.review_session_key(_digest(token)))
    return Reviewer.parse(json.loads(raw)["reviewer"]) if raw else None


def end_session(r, token: str | None) -> None:
    if token:
        with _translate():
            r.delete(keys.review_session_key(_digest(token)))


def console_reviewer(request: Request) -> Reviewer | None:
    """The logged-in reviewer of this request, or None. A reviewer whose entry left
    TENDERSCAN_REVIEWER_KEYS (the API restarted with the new settings) is logged out at once."""
    reviewer = session_reviewer(request.app.state.deps.verdicts.r, request.cookies.get(COOKIE))
    if reviewer is None or reviewer.id not in request.app.state.settings.reviewer_keys.values():
        return None
    return reviewer


def require_reviewer(request: Request) -> Reviewer:
    """The JSON API's dependency: 401 without a session; POSTs also need the CSRF header."""
    reviewer = console_reviewer(request)
    if reviewer is None:
        raise ApiError(401, "unauthorized", "log in to the review console first (POST /review/login)")
    if request.method == "POST" and request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "forbidden", f"the console's calls carry `{CSRF_HEADER}: 1`")
    request.state.tenant = reviewer.scope  # for the request log
    return reviewer
