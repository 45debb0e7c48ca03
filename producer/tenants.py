"""Tenants and their API keys: the registry in S3, its cached index in each API process.

    key format   tsk_ + 32 random base62 + 6 base62 CRC32 of the first 36 characters   (42 characters)
                 The checksum lets the edge refuse a mistyped or truncated key before any lookup, and
                 lets secret scanners match `tsk_[0-9A-Za-z]{38}` with few false positives.
    key id       the first 12 characters (`tsk_` + 8): what `tenant list` and revocation name a key by.
    stored       only HMAC-SHA256(settings.key_hmac_secret, key), hex; the key is shown once, at creation.
    registry     s3://$S3_BUCKET/tenants/{tenant}.json, one TenantRecord per tenant (source of truth,
                 written by `tenderscan tenant`, read by the API). Each API process reloads the whole
                 registry every `tenant_refresh_s` seconds (TenantRegistry.run), so a revocation is
                 honoured everywhere within that interval plus one reload; `refresh()` forces it.
    lookup       Snapshot.lookup compares the presented digest with EVERY stored digest
                 (hmac.compare_digest, no early exit): the time does not depend on which key matched.
    last use     ts:keyuse:{tenant} hash, key_id -> time; each API process writes it at most every
                 keys.KEY_USE_EVERY_S per key (lossy by design: a counter, not an audit trail).

Concurrent edits of one tenant by two operators are last-writer-wins (S3 has no compare-and-swap
here); the CLI re-reads the record right before each write to keep the window small.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from starlette.concurrency import run_in_threadpool

from workers.core import clock, keys, schemas
from workers.core.errors import ContractError, ObjectNotFound, StorageError, TenderscanError, TransientError
from workers.core.logging import get_logger
from workers.core.storage import ObjectStore

log = get_logger("producer.tenants")

TENANT_VERSION = 1  # TenantRecord schema
KEY_PREFIX = "tsk_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # base62
BODY_LEN = 32  # random characters: 32 * log2(62) = 190 bits
CHECK_LEN = 6  # base62 CRC32 (62**6 > 2**32)
KEY_LEN = len(KEY_PREFIX) + BODY_LEN + CHECK_LEN
KEY_ID_LEN = len(KEY_PREFIX) + 8
_KEY = re.compile(rf"^{KEY_PREFIX}[0-9A-Za-z]{{{BODY_LEN + CHECK_LEN}}}$")
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # ends up in S3 keys, Redis keys and logs


class TenantError(TenderscanError):
    """An operator's request the registry cannot honour (unknown tenant, duplicate, unknown key id)."""


# --- the key format ------------------------------------------------------------------------------
def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(head: str) -> str:
    return _base62(zlib.crc32(head.encode("ascii")), CHECK_LEN)


def new_key() -> str:
    head = KEY_PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return head + _checksum(head)


def looks_like_registry_key(key: str) -> bool:
    """True for anything claiming the registry format (well-formed or not)."""
    return key.startswith(KEY_PREFIX)


def is_well_formed(key: str) -> bool:
    """Prefix, length, alphabet and checksum. Says nothing about whether the key exists."""
    return bool(_KEY.match(key)) and hmac.compare_digest(_checksum(key[:-CHECK_LEN]), key[-CHECK_LEN:])


def key_id(key: str) -> str:
    return key[:KEY_ID_LEN]


def key_digest(secret: str, key: str) -> str:
    """What the registry stores for `key`: HMAC-SHA256(secret, key), hex."""
    return hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def is_tenant_id(value: str) -> bool:
    return bool(_TENANT.match(value))


# --- the record ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKey:
    key_id: str
    digest: str  # key_digest(secret, key)
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's overrides; None = the setting's default (producer/limits.py resolves them)."""

    rate_per_s: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    max_body_bytes: int | None = None  # may only tighten settings.max_body_bytes
    max_pixels: int | None = None  # may only tighten settings.max_pixels


@dataclass(frozen=True)
class TenantRecord:
    tenant: str
    created_at: str
    limits: TenantLimits = field(default_factory=TenantLimits)
    keys: tuple[ApiKey, ...] = ()
    v: int = TENANT_VERSION

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def decode(cls, raw: str | bytes) -> TenantRecord:
        data = schemas.decode_json(raw, "tenant record")
        if data.get("v") != TENANT_VERSION:
            raise ContractError(f"tenant record version {data.get('v')!r} is not {TENANT_VERSION}")
        try:
            record = cls(tenant=data["tenant"], created_at=data["created_at"],
                         limits=TenantLimits(**(data.get("limits") or {})),
                         keys=tuple(ApiKey(**k) for k in data.get("keys") or ()), v=data["v"])
        except (KeyError, TypeError) as exc:
            raise ContractError(f"tenant record fields: {exc}") from None
        if not is_tenant_id(record.tenant):
            raise ContractError("tenant record has a malformed tenant id")
        return record

    def active_keys(self) -> list[ApiKey]:
        return [k for k in self.keys if k.revoked_at is None]


# --- the registry in S3 (operators' side: `tenderscan tenant`) -------------------------------------
@dataclass(frozen=True)
class TenantStore:
    objects: ObjectStore  # the scans bucket; records live under keys.TENANTS_PREFIX

    def get(self, tenant: str) -> TenantRecord | None:
        try:
            return TenantRecord.decode(self.objects.get(keys.tenant_s3_key(tenant), max_bytes=1 << 20).data)
        except ObjectNotFound:
            return None

    def put(self, record: TenantRecord) -> None:
        self.objects.put(keys.tenant_s3_key(record.tenant), record.encode(), "application/json")

    def all(self) -> list[TenantRecord]:
        """Every record that decodes; a broken one is logged and skipped (its keys do not work)."""
        out = []
        for key in sorted(self.objects.list(keys.TENANTS_PREFIX)):
            if not key.endswith(".json"):
                continue
            try:
                out.append(TenantRecord.decode(self.objects.get(key, max_bytes=1 << 20).data))
            except ObjectNotFound:
                continue  # deleted between list and get
            except ContractError as exc:
                log.error("tenant_record_undecodable", s3_object=key, detail=exc.detail)  # an object name, no secret
        return out

    def require(self, tenant: str) -> TenantRecord:
        record = self.get(tenant)
        if record is None:
            raise TenantError(f"no tenant {tenant!r} (tenderscan tenant create {tenant})")
        return record

    # --- operations (plain functions behind the CLI) -----------------------------------------------
    def create(self, tenant: str, secret: str, limits: TenantLimits, with_key: bool = True) -> tuple[TenantRecord, str | None]:
        if not is_tenant_id(tenant):
            raise TenantError(f"tenant id {tenant!r} must be 1-64 letters, digits, '-' or '_'")
        if self.get(tenant) is not None:
            raise TenantError(f"tenant {tenant!r} exists (add a key with `tenderscan tenant key-add {tenant}`)")
        record = TenantRecord(tenant, clock.utcnow(), limits)
        key = None
        if with_key:
            record, key = _with_new_key(record, secret)
        self.put(record)
        return record, key

    def add_key(self, tenant: str, secret: str) -> tuple[TenantRecord, str]:
        record, key = _with_new_key(self.require(tenant), secret)
        self.put(record)
        return record, key

    def revoke_key(self, tenant: str, kid: str) -> TenantRecord:
        record = self.require(tenant)
        if not any(k.key_id == kid for k in record.keys):
            raise TenantError(f"tenant {tenant!r} has no key {kid!r} (see `tenderscan tenant list`)")
        now = clock.utcnow()
        keys = tuple(replace(k, revoked_at=k.revoked_at or now) if k.key_id == kid else k for k in record.keys)
        record = replace(record, keys=keys)
        self.put(record)
        return record

    def set_limits(self, tenant: str, **changes) -> TenantRecord:
        record = self.require(tenant)
        record = replace(record, limits=replace(record.limits, **changes))
        self.put(record)
        return record


def _with_new_key(record: TenantRecord, secret: str) -> tuple[TenantRecord, str]:
    taken = {k.key_id for k in record.keys}
    key = new_key()
    while key_id(key) in taken:  # 62**8 ids: practically never
        key = new_key()
    entry = ApiKey(key_id(key), key_digest(secret, key), clock.utcnow())
    return replace(record, keys=(*record.keys, entry)), key


# --- the API's cached index ------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    tenant: str
    key_id: str
    revoked: bool


@dataclass(frozen=True)
class Snapshot:
    """The registry as one API process sees it: every key digest, every tenant's overrides."""

    entries: tuple[tuple[bytes, Match], ...] = ()
    limits: Mapping[str, TenantLimits] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[TenantRecord]) -> Snapshot:
        entries = tuple((k.digest.encode("ascii"), Match(r.tenant, k.key_id, k.revoked_at is not None))
                        for r in records for k in r.keys)
        return cls(entries, {r.tenant: r.limits for r in records})

    def lookup(self, digest: str) -> Match | None:
        """Constant time in the digest's content: every entry is compared, no early exit."""
        presented = digest.encode("ascii")
        found: Match | None = None
        for stored, match in self.entries:
            if hmac.compare_digest(presented, stored):
                found = match  # keep looping
        return found


class RegistryUnavailable(TransientError):
    """The API has not read the tenant registry yet (S3 down since start): 503, retry."""


class TenantRegistry:
    def __init__(self, store: TenantStore, secret: str, refresh_s: float = 5.0) -> None:
        self.store = store
        self.secret = secret
        self.refresh_s = refresh_s
        self.snapshot: Snapshot | None = None
        self.refreshed_at = 0.0  # time.monotonic() of the last successful reload

    def refresh(self) -> Snapshot:
        """Reload every record from S3 now (blocking). Raises TransientError / StorageError."""
        snapshot = Snapshot.of(self.store.all())
        self.snapshot, self.refreshed_at = snapshot, time.monotonic()
        return snapshot

    def identify(self, key: str) -> Match | None:
        if self.snapshot is None:
            raise RegistryUnavailable("the tenant registry has not been read yet")
        return self.snapshot.lookup(key_digest(self.secret, key))

    def limits_for(self, tenant: str) -> TenantLimits:
        return (self.snapshot.limits if self.snapshot else {}).get(tenant, TenantLimits())

    async def run(self) -> None:
        """Reload every refresh_s until cancelled; a failed reload keeps the last good snapshot."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await run_in_threadpool(self.refresh)
            except (TransientError, StorageError) as exc:
                log.warning("tenant_registry_refresh_failed", error=type(exc).__name__,
                            age_s=round(time.monotonic() - self.refreshed_at, 1) if self.refreshed_at else None)


class KeyUseRecorder:
    """ts:keyuse:{tenant}[key_id] = now, at most once per `every_s` per key in this process."""

    def __init__(self, redis_client, every_s: float = keys.KEY_USE_EVERY_S) -> None:
        self.r = redis_client
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, tenant: str, kid: str) -> bool:
        """True when this call wrote. Never raises: a lost last-use stamp is acceptable."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kid, -self.every_s) < self.every_s:
                return False
            self._last[kid] = now
        try:
            self.r.hset(keys.key_use_key(tenant), kid, clock.utcnow())
        except Exception as exc:  # noqa: BLE001 - redis down: the request itself goes on
            log.warning("key_use_not_recorded", tenant=tenant, error=type(exc).__name__)
            return False
        return True
