"""One frozen settings object, declared once, read from the environment once at the entry point.

Every entry point (`tenderscan api`, `tenderscan worker`, `celery -A workers.app`, the CLI) calls
`Settings.from_env()` once and passes the result down. Business code never reads `os.environ`.

    declaration   each field below is the whole truth about one setting: its type, its default, its
                  range, what it does (the description), whether it is a secret, and whether a
                  deployment is expected to set its own value (`per_deployment`: addresses, buckets,
                  keys). The environment variable is TENDERSCAN_ + the field name in capitals.
    precedence    the process environment, then a `.env` file in the current directory, then the
                  default. An empty value counts as unset (except TENDERSCAN_S3_ENDPOINT_URL, where
                  empty means AWS's own endpoint), so `TENDERSCAN_X=` falls through to .env and then
                  to the default. `from_env(mapping)` reads that mapping alone (tests), no .env.
    errors        a bad value raises SettingsError naming the variable, at start, not on the first
                  scan: the type, the range, and the checks that involve two settings (`cross_check`).
    generated     `.env.example` is `tenderscan settings --example`; docker-compose.yml and the k8s
                  ConfigMap are checked against this declaration (tests/workers/core/test_settings.py,
                  tests/test_compose.py, tests/test_k8s.py).

Why pydantic and not pydantic-settings: a `BaseSettings` reads os.environ and .env on every
construction, so `Settings()` (the defaults, used throughout the tests) would pick up a developer's
.env, and it has no public way to read a given mapping instead of os.environ. The declaration and the
validation are pydantic's; the reading is `from_env`, a dozen lines (python-dotenv parses the file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from workers.core.errors import SettingsError
from workers.core.schemas import MAX_SCANS_PER_MESSAGE

PREFIX = "TENDERSCAN_"
ENV_FILE = ".env"  # read from the current directory by from_env(), under the process environment
# The built-in HMAC secret for API key digests: fine on a laptop, refused by `tenderscan api` on a
# non-loopback interface (producer/cli/commands/api.py). Set TENDERSCAN_KEY_HMAC_SECRET everywhere else.
DEV_KEY_HMAC_SECRET = "dev-only-tenderscan-key-hmac-secret"
DEFAULT_MODEL_PATH = str(Path(__file__).resolve().parents[2] / "models" / "default" / "tenderscan-default.pt")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setting(default: Any, description: str, *, section: str | None = None, secret: bool = False,
            per_deployment: bool = False, keep_empty: bool = False, example: str | None = None,
            **constraints: Any) -> Any:
    """Declare one setting. `constraints` are pydantic's (ge, le, ...). `section` starts a new group in
    .env.example; `example` is what .env.example shows when the default is not portable (a path)."""
    return Field(default, description=description, repr=not secret, **constraints,
                 json_schema_extra={"section": section, "secret": secret, "per_deployment": per_deployment,
                                    "keep_empty": keep_empty, "example": example})


def parse_api_keys(raw: str, name: str = PREFIX + "API_KEYS") -> dict[str, str]:
    """Parse `tenant:sha256hex,tenant2:sha256hex` into {key_hash: tenant}.

    Only hashes live in configuration (`tenderscan keyhash KEY` prints one); the keys themselves
    are shown once to the tenant and never stored.
    """
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        tenant, sep, digest = item.partition(":")
        digest = digest.strip().lower()
        if not sep or not tenant.strip() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingsError(f"{name}: entry {tenant.strip() or item[:12]!r} must look like tenant:<64 hex sha256>")
        if not tenant.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(f"{name}: tenant id {tenant!r} may hold only letters, digits, '-' and '_'")
        out[digest] = tenant.strip()
    return out


def parse_reviewer_keys(raw: str, name: str = PREFIX + "REVIEWER_KEYS") -> dict[str, str]:
    """Parse `name@scope:sha256hex,...` into {key_hash: "name@scope"}: the review console's logins.

    `scope` is the one tenant whose scans the reviewer judges, or `*` for an auditor across tenants.
    Only digests live in configuration (`tenderscan keyhash KEY`), like TENDERSCAN_API_KEYS.
    """
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        who, sep, digest = item.rpartition(":")
        digest = digest.strip().lower()
        reviewer, at, scope = who.strip().partition("@")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingsError(f"{name}: entry {who or item[:12]!r} must look like name@tenant:<64 hex sha256>")
        if not at or not _plain_id(reviewer) or not (scope == "*" or _plain_id(scope)):
            raise SettingsError(f"{name}: {who!r} must be name@tenant or name@* (letters, digits, '-', '_')")
        out[digest] = f"{reviewer}@{scope}"
    return out


def _plain_id(value: str) -> bool:
    return bool(value) and len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def parse_key_hex(raw: str, name: str) -> str:
    """A 32-byte key (an Ed25519 seed or public key) as 64 hex digits, or SettingsError naming the variable."""
    value = raw.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SettingsError(f"{name} must be 64 hex digits (32 bytes; `tenderscan audit keygen` makes one)")
    return value


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False, allow_inf_nan=False)

    # --- services -------------------------------------------------------------------------------
    redis_url: str = setting("redis://127.0.0.1:6379/0", "scan states, verdicts, idempotency keys (rediss:// for TLS)",
                             section="services", per_deployment=True)
    broker_url: str = setting("", "Celery broker; empty = TENDERSCAN_REDIS_URL", per_deployment=True)
    s3_endpoint_url: str = setting("http://127.0.0.1:8333", "empty = AWS's own endpoint", per_deployment=True,
                                   keep_empty=True)
    s3_region: str = setting("us-east-1", "the S3 region requests are signed for", per_deployment=True)
    s3_access_key: str = setting("tenderscan", "S3 credentials", secret=True, per_deployment=True)
    s3_secret_key: str = setting("tenderscan-secret", "S3 credentials", secret=True, per_deployment=True)
    s3_bucket: str = setting("tenderscan", "scans/ and verdicts/", per_deployment=True)
    models_bucket: str = setting("tenderscan-models", "the model registry", per_deployment=True)
    # --- transport security (workers/core/transport.py) -------------------------------------------
    redis_tls_ca_file: str = setting("", "rediss://: CA that signed Redis's certificate; empty = system store",
                                     section='transport security (docs/OPERATIONS.md "Transport security")',
                                     per_deployment=True)
    redis_tls_cert_file: str = setting("", "rediss://: client certificate, if Redis asks for one",
                                       per_deployment=True)
    redis_tls_key_file: str = setting("", "rediss://: the client certificate's key", per_deployment=True)
    redis_tls_insecure: bool = setting(False, "dev only: allows ?ssl_cert_reqs=none in a rediss:// URL")
    s3_ca_file: str = setting("", "https:// S3: CA bundle for boto3 verify=; empty = system store",
                              per_deployment=True)
    # --- direct upload (producer/uploads.py) ------------------------------------------------------
    s3_public_endpoint_url: str = setting(
        "", "S3 endpoint POS devices reach; empty = TENDERSCAN_S3_ENDPOINT_URL",
        section="direct upload (POST /v1/uploads: presigned POST, then submit by reference)", per_deployment=True)
    upload_expiry_s: int = setting(300, "lifetime of a presigned POST (a bearer grant)", ge=1, le=3600)
    # --- edge -----------------------------------------------------------------------------------
    api_keys: Mapping[str, str] = setting(
        {}, "bootstrap keys: tenant:sha256(key),...; `tenderscan keyhash KEY`. Tenants' own keys: `tenderscan tenant`",
        section="edge", secret=True, per_deployment=True)
    public_url: str = setting("", "prefix of poll URLs in 202 answers; empty = relative", per_deployment=True)
    max_body_bytes: int = setting(10 * 1024 * 1024, "largest upload", ge=1)
    body_timeout_s: int = setting(60, "a request body must arrive whole this long after its request began: "
                                      "408 request_timeout otherwise", ge=1)
    max_pixels: int = setting(24_000_000, "decompression-bomb cap, width*height", ge=1)
    min_side: int = setting(32, "px; smaller images cannot hold a readable bill", ge=1)
    max_side: int = setting(8000, "px, the longest accepted side", ge=1)
    # --- tenants and limits (producer/tenants.py, producer/limits.py); a tenant record may override ---
    key_hmac_secret: str = setting(
        DEV_KEY_HMAC_SECRET, "a secret: keys are stored as HMAC-SHA256(this, key). `openssl rand -hex 32`; "
        "the API refuses this default off loopback; changing it invalidates every registry key",
        section="tenants and per-tenant limits (`tenderscan tenant`; a tenant record may override the limits)",
        secret=True, per_deployment=True, min_length=16)
    tenant_refresh_s: int = setting(5, "the API re-reads the tenant registry (S3) this often: a revoked key "
                                       "stops within it", ge=1)
    tenant_rate_per_s: float = setting(500.0, "requests/s per tenant, all API replicas together (0 = no limit)",
                                       ge=0)
    tenant_burst: int = setting(1000, "token bucket size: requests a tenant may send at once", ge=1)
    tenant_max_in_flight: int = setting(50_000, "scans accepted without a verdict yet, per tenant (0 = no limit)",
                                        ge=0)
    in_flight_ttl_s: int = setting(900, "an in-flight entry older than this ages out (scan lost without a verdict)",
                                   ge=1)
    # --- verdicts -------------------------------------------------------------------------------
    verdict_ttl_s: int = setting(24 * 3600, "Redis keeps states and verdicts this long (S3 keeps them for good)",
                                 section="verdicts", ge=1)
    idempotency_ttl_s: int = setting(24 * 3600, "how long an Idempotency-Key is remembered", ge=1)
    # --- worker ---------------------------------------------------------------------------------
    model: str = setting(DEFAULT_MODEL_PATH, "a path, or registry:production / registry:VERSION; "
                                             "empty = the checkpoint shipped in models/default/",
                         section="worker", per_deployment=True, example="")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", pattern=r"^(auto|cpu|cuda|cuda:\d+)$")
    max_batch_size: int = setting(32, "most scans in one forward pass", ge=1)
    max_wait_ms: int = setting(10, "longest a scan waits for its batch to fill", ge=0)
    worker_concurrency: int = setting(0, "scans in flight per worker process; 0 = 2 * MAX_BATCH_SIZE", ge=0)
    worker_processes: int = setting(1, "worker processes `tenderscan worker` runs under one supervisor "
                                       "(workers/runtime/supervisor.py); 0 = one per CPU; GPU pods: several", ge=0)
    task_soft_time_limit_s: int = setting(60, "a scan taking longer than this is failed and redelivered", ge=1)
    task_time_limit_s: int = setting(90, "hard kill; at least TASK_SOFT_TIME_LIMIT_S", ge=1)
    visibility_timeout_s: int = setting(300, "Redis redelivers an unacked message after this long; must exceed "
                                             "TASK_TIME_LIMIT_S + MAX_WAIT_MS + the longer of 30 s and the "
                                             "longest retry pause", ge=1)
    max_attempts: int = setting(5, "deliveries before a scan is judged poison (`error` verdict); S3/Redis outages "
                                   "do not count (workers/runtime/retrying.py)", ge=1)
    transient_retry_window_s: int = setting(900, "retry through S3/Redis outages this long, then `error` "
                                                 "(infrastructure_unavailable); < VERDICT_TTL_S", ge=1)
    shutdown_grace_s: int = setting(25, "SIGTERM: finish scans in hand this long, then requeue the rest and exit; "
                                        "keep below the pod's termination grace", ge=1)
    scans_per_message: int = setting(16, "bulk submissions: scans per queue message (1 = one each)",
                                     ge=1, le=MAX_SCANS_PER_MESSAGE)
    compile: bool = setting(False, "torch.compile the model at load (GPU workers; the warm-up pays the compile)")
    metrics_port: int = setting(0, "worker Prometheus /metrics port (0 = off; the API serves /metrics)",
                                per_deployment=True, ge=0, le=65535)
    # --- model rollout (workers/runtime/models_live.py, rollout.py; docs/OPERATIONS.md) ------------
    model_poll_s: float = setting(5.0, "a worker serving registry:ALIAS re-reads the alias (and the canary "
                                       "alias) this often and swaps to a new version between batches; "
                                       "0 = load once at start", section="model rollout", ge=0)
    canary_alias: str = setting("canary", "the registry alias whose version decides CANARY_SHARE of scans",
                                pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    canary_share: float = setting(0.05, "share of scans (by a hash of the scan id) the canary decides",
                                  ge=0, le=1)
    canary_window_s: int = setting(60, "the canary is judged over this window (and the one before it)", ge=1)
    canary_min_scans: int = setting(30, "canary verdicts needed in the window before it is judged", ge=1)
    canary_review_margin: float = setting(0.05, "roll back when the canary's review rate exceeds production's "
                                                "(same window) by more than this", ge=0, le=1)
    canary_max_error_rate: float = setting(0.02, "roll back when this share of the canary's scans fail in "
                                                 "its forward pass", ge=0, le=1)
    canary_min_reviews: int = setting(10, "reviewed counterfeit verdicts of the canary needed before its "
                                          "false-reject rate is judged", ge=1)
    canary_max_false_reject: float = setting(0.05, "roll back when this share of the canary's reviewed counterfeit "
                                                   "verdicts were genuine notes (the review console's labels)",
                                             ge=0, le=1)
    shadow_alias: str = setting("shadow", "the registry alias whose version also scores SHADOW_SHARE of scans, "
                                          "answers recorded, never returned", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    shadow_share: float = setting(0.1, "share of scans (by a hash of the scan id) the shadow also scores", ge=0, le=1)
    # --- reconciler (S3 is the source of truth; see workers/runtime/reconcile.py) ------------------
    reconcile_interval_s: int = setting(15, "the scans in flight are re-checked this often; 0 disables the "
                                            "worker's reconciler",
                                        section="reconciler: re-enqueues accepted scans (intent in S3) "
                                                "that have no verdict", ge=0)
    reconcile_stale_after_s: int = setting(60, "seconds without a verdict after (re)enqueue", ge=1)
    reconcile_sweep_interval_s: int = setting(3600, "the backstop: a full pass over the S3 intents this often, "
                                                    "and at once after Redis restarted or failed over (0 = never)",
                                              ge=0)
    reconcile_days: int = setting(2, "daily partitions the sweep looks back", ge=1)
    heartbeat_file: str = setting("/tmp/tenderscan-worker.heartbeat", "liveness probe: python -m workers.health")
    # --- audit (docs/AUDIT.md) ------------------------------------------------------------------
    audit_signing_key: str = setting("", "Ed25519 seed, 64 hex (`tenderscan audit keygen`); a secret. "
                                         "Empty = unsigned records (a warning; `audit verify` flags them)",
                                     section="audit records (docs/AUDIT.md)", secret=True, per_deployment=True)
    audit_public_keys: tuple[str, ...] = setting((), "published public keys `audit verify` trusts, "
                                                     "comma-separated 64 hex", per_deployment=True)
    # --- review console (producer/review/, docs/REVIEW.md) -----------------------------------------
    reviewer_keys: Mapping[str, str] = setting(
        {}, "review console logins: name@tenant:sha256(key) (a tenant's reviewer) or name@*:sha256(key) "
            "(an auditor across tenants), comma-separated; `tenderscan keyhash KEY`",
        section="review console (docs/REVIEW.md)", secret=True, per_deployment=True)
    review_signing_key: str = setting("", "Ed25519 seed, 64 hex, the API signs review records with (`tenderscan audit "
                                          "keygen`); a secret, NOT the workers' audit key (a key the API holds "
                                          "must not sign verdicts). Empty = reviews written unsigned",
                                      secret=True, per_deployment=True)
    review_public_keys: tuple[str, ...] = setting((), "published public keys of review signers: `audit verify` "
                                                      "trusts them on review records only, comma-separated 64 hex",
                                                  per_deployment=True)
    review_qc_sample: float = setting(0.01, "share of auto-decided (genuine/counterfeit) scans also queued for "
                                            "review, for quality control; drawn by a hash of the scan id", ge=0, le=1)
    review_sla_s: int = setting(4 * 3600, "a queued scan older than this is overdue (the console marks it)", ge=1)
    review_claim_ttl_s: int = setting(300, "a reviewer's claim on a scan lapses after this long (s) unless renewed",
                                      ge=10)
    review_session_ttl_s: int = setting(8 * 3600, "a console login lasts this long (s)", ge=60)
    # --- logs -----------------------------------------------------------------------------------
    log_level: str = setting("INFO", "DEBUG | INFO | WARNING | ERROR", section="logs")
    log_json: bool = setting(True, "one JSON object per line (false: human-readable lines)")
    # --- webhooks (docs/WEBHOOKS.md) ------------------------------------------------------------
    webhook_timeout_s: float = setting(10.0, "connect, and then each read, of a webhook delivery; a receiver "
                                             "slower than this has failed the attempt",
                                       section="webhooks (docs/WEBHOOKS.md)", gt=0)
    webhook_backoff_base_s: float = setting(5.0, "the first retry waits up to this long; each next one up to "
                                                 "twice as long (full jitter)", gt=0)
    webhook_backoff_cap_s: float = setting(3600.0, "the longest wait between two attempts", gt=0)
    webhook_retry_window_s: int = setting(24 * 3600, "a delivery is retried this long after its first attempt, "
                                                     "then given up", ge=1)
    webhook_disable_after_s: int = setting(12 * 3600, "an endpoint failing without a single success this long is "
                                                      "disabled; its deliveries wait (parked) until "
                                                      "`tenderscan webhook enable`", ge=1)
    webhook_rotation_overlap_s: int = setting(24 * 3600, "after a secret rotation the old secret still signs "
                                                         "(a second signature) this long", ge=0)
    webhook_retention_s: int = setting(7 * 24 * 3600, "events and their delivery state are kept this long "
                                                      "(parked ones too)", ge=1)
    webhook_lease_s: int = setting(120, "a claimed delivery comes back to the schedule after this long if its "
                                        "deliverer died; above WEBHOOK_TIMEOUT_S", ge=1)
    webhook_concurrency: int = setting(8, "deliveries in flight per `tenderscan webhook deliver` process", ge=1)
    webhook_poll_s: float = setting(0.5, "the deliverer looks for due deliveries this often when idle", gt=0)
    webhook_allow_cidrs: tuple[str, ...] = setting((), "comma-separated CIDRs a receiver may resolve to even "
                                                       "though they are refused by default (loopback, private); "
                                                       "for tests and private deployments only")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, values)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are frozen: use .with_({name}=...) for a changed copy")

    # --- one-variable forms (before the type check) --------------------------------------------
    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        return parse_api_keys(value) if isinstance(value, str) else value

    @field_validator("reviewer_keys", mode="before")
    @classmethod
    def _reviewer_keys(cls, value: Any) -> Any:
        return parse_reviewer_keys(value) if isinstance(value, str) else value

    @field_validator("audit_signing_key", "review_signing_key", mode="before")
    @classmethod
    def _signing_key(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):  # empty stays empty: records are written unsigned
            return parse_key_hex(value, PREFIX + info.field_name.upper()) if value.strip() else ""
        return value

    @field_validator("audit_public_keys", "review_public_keys", mode="before")
    @classmethod
    def _public_keys(cls, value: Any, info: ValidationInfo) -> Any:
        parts = value.split(",") if isinstance(value, str) else value
        return tuple(parse_key_hex(p, PREFIX + info.field_name.upper()) for p in parts if p.strip())

    @field_validator("webhook_allow_cidrs", mode="before")
    @classmethod
    def _allow_cidrs(cls, value: Any) -> Any:
        import ipaddress

        parts = value.split(",") if isinstance(value, str) else value
        out = []
        for part in (p.strip() for p in parts):
            if part:
                try:
                    out.append(str(ipaddress.ip_network(part, strict=False)))
                except ValueError:
                    raise SettingsError(f"{PREFIX}WEBHOOK_ALLOW_CIDRS: {part!r} is not a CIDR") from None
        return tuple(out)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_url", "s3_public_endpoint_url", mode="before")
    @classmethod
    def _no_trailing_slash(cls, value: Any) -> Any:
        return value.rstrip("/") if isinstance(value, str) else value

    @model_validator(mode="after")
    def cross_check(self) -> Settings:
        """The checks a single variable cannot make on its own, then the TLS options into the Redis URLs."""
        if self.task_time_limit_s < self.task_soft_time_limit_s:
            raise SettingsError(f"{PREFIX}TASK_TIME_LIMIT_S must be >= {PREFIX}TASK_SOFT_TIME_LIMIT_S")
        # A prefetched message waits at most one batch window before its task starts, and a retry
        # (a message with a countdown) is held unacked by its worker until it is due; neither may be
        # redelivered to a second worker while the first still holds it legitimately.
        longest_hold = self.task_time_limit_s + self.max_wait_ms / 1000 + max(30.0, 1.5 * self.retry_backoff_cap_s)
        if self.visibility_timeout_s <= longest_hold:
            raise SettingsError(
                f"{PREFIX}VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed "
                f"TASK_TIME_LIMIT_S + MAX_WAIT_MS + the longer of 30 s and the longest retry pause "
                f"({longest_hold:.0f})"
            )
        # The scan state holds when its outages began; it must outlive the window measured from it.
        if self.transient_retry_window_s >= self.verdict_ttl_s:
            raise SettingsError(f"{PREFIX}TRANSIENT_RETRY_WINDOW_S ({self.transient_retry_window_s}) must be "
                                f"below {PREFIX}VERDICT_TTL_S ({self.verdict_ttl_s})")
        if self.min_side > self.max_side:
            raise SettingsError(f"{PREFIX}MIN_SIDE ({self.min_side}) must be at most {PREFIX}MAX_SIDE ({self.max_side})")
        if self.webhook_lease_s <= 2 * self.webhook_timeout_s:
            raise SettingsError(f"{PREFIX}WEBHOOK_LEASE_S ({self.webhook_lease_s}) must exceed twice "
                                f"{PREFIX}WEBHOOK_TIMEOUT_S (a connect and a read)")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        for name in ("s3_bucket", "models_bucket"):
            value = getattr(self, name)
            if not (3 <= len(value) <= 63) or not value.replace("-", "").replace(".", "").isalnum():
                raise SettingsError(f"{PREFIX}{name.upper()} {value!r} is not a valid S3 bucket name")
        # A rediss:// URL carries its TLS options as query parameters (redis-py and kombu read them
        # there), so every Redis client built from it verifies the server: workers/core/transport.py.
        from workers.core.transport import RedisTls, secure_redis_url, validate_redis_tls, validate_s3_tls

        tls = RedisTls(self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file,
                       self.redis_tls_insecure)
        object.__setattr__(self, "redis_url", secure_redis_url(self.redis_url, tls, PREFIX + "REDIS_URL"))
        object.__setattr__(self, "broker_url", secure_redis_url(self.broker_url, tls, PREFIX + "BROKER_URL"))
        validate_redis_tls(tls, {PREFIX + "REDIS_URL": self.redis_url, PREFIX + "BROKER_URL": self.effective_broker_url})
        validate_s3_tls(self.s3_ca_file)
        return self

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def effective_s3_public_endpoint_url(self) -> str:
        return self.s3_public_endpoint_url or self.s3_endpoint_url

    @property
    def effective_concurrency(self) -> int:
        return self.worker_concurrency or 2 * self.max_batch_size

    @property
    def retry_backoff_cap_s(self) -> float:
        """The longest pause before a failed scan's next try, before jitter (x0.5..1.5): 60 s, or half the
        reconciler's staleness if less, so a scheduled retry always fires before the reconciler would
        take the scan for lost and enqueue a second copy (workers/runtime/retrying.py)."""
        return min(60.0, self.reconcile_stale_after_s / 2)

    @classmethod
    def default(cls, name: str) -> Any:
        """A setting's declared default (a dataclass's `Settings.max_attempts`, which pydantic does not offer)."""
        return cls.model_fields[name].default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> Settings:
        """The settings of this process: `env` (default: os.environ, over ./.env), then the defaults.

        With an explicit `env` mapping no file is read unless `env_file` names one.
        """
        if env is None:
            env = os.environ
            env_file = ENV_FILE if env_file is None else env_file
        return cls(**values_from(env, read_env_file(env_file) if env_file else {}))

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated like the original (tests and the demo use this)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**values, **changes})


@dataclass(frozen=True)
class Declared:
    """One setting as the generators and the configuration tests see it."""

    name: str  # the field, e.g. max_batch_size
    env: str  # its variable, e.g. TENDERSCAN_MAX_BATCH_SIZE
    default: Any
    description: str
    section: str | None  # set on the first setting of a group
    secret: bool  # belongs in a Secret, never in a ConfigMap or a log
    per_deployment: bool  # a deployment sets its own (addresses, buckets, keys); others keep the default
    keep_empty: bool  # an empty value means something (not "unset")
    example: str | None  # what .env.example shows instead of the default


def declared() -> list[Declared]:
    """Every setting, in declaration order."""
    out = []
    for name, f in Settings.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        out.append(Declared(name, PREFIX + name.upper(), f.default, f.description or "", extra.get("section"),
                            bool(extra.get("secret")), bool(extra.get("per_deployment")),
                            bool(extra.get("keep_empty")), extra.get("example")))
    return out


def env_names() -> list[str]:
    """Every environment variable Settings reads (the compose-file and k8s tests check them all)."""
    return [PREFIX + name.upper() for name in Settings.model_fields]


def read_env_file(path: str | Path) -> dict[str, str]:
    """The TENDERSCAN_* variables of a .env file (KEY=value lines, `#` comments); {} if there is none.

    No `${VAR}` interpolation: a secret containing `$` is taken as written.
    """
    from dotenv import dotenv_values

    path = Path(path)
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if k.startswith(PREFIX) and v is not None}


def values_from(env: Mapping[str, str], file_values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The raw value of each setting that is set: `env` over `file_values`; empty counts as unset."""
    out: dict[str, str] = {}
    for d in declared():
        for source in (env, file_values or {}):
            raw = source.get(d.env)
            if raw is not None and (raw != "" or d.keep_empty):
                out[d.name] = raw
                break
    return out


def _explain(exc: ValidationError, values: Mapping[str, Any]) -> str:
    """pydantic's errors, each naming the environment variable and the value it got."""
    parts = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        var = PREFIX + field.upper() if field else "settings"
        f = Settings.model_fields.get(field)
        got = "(hidden)" if f is not None and not f.repr else repr(values.get(field, err.get("input")))
        parts.append(f"{var}: {err['msg'][:1].lower()}{err['msg'][1:]}, got {got}")
    return "; ".join(parts)
