"""One frozen settings object, read from the environment once at the entry point.

Every entry point (`tenderscan api`, `tenderscan worker`, `celery -A workers.app`, the CLI) calls
`Settings.from_env()` once and passes the result down. Business code never reads `os.environ`.
A bad value raises `SettingsError` naming the variable, so a misconfigured pod fails at start,
not on the first scan. `.env.example` lists every variable below with its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from workers.core.errors import SettingsError

PREFIX = "TENDERSCAN_"
# The built-in HMAC secret for API key digests: fine on a laptop, refused by `tenderscan api` on a
# non-loopback interface (producer/cli/commands/api.py). Set TENDERSCAN_KEY_HMAC_SECRET everywhere else.
DEV_KEY_HMAC_SECRET = "dev-only-tenderscan-key-hmac-secret"
DEFAULT_MODEL_PATH = str(Path(__file__).resolve().parents[2] / "models" / "default" / "tenderscan-default.pt")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw == "" else raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


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


def parse_key_hex(raw: str, name: str) -> str:
    """A 32-byte key (an Ed25519 seed or public key) as 64 hex digits, or SettingsError naming the variable."""
    value = raw.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SettingsError(f"{name} must be 64 hex digits (32 bytes; `tenderscan audit keygen` makes one)")
    return value


def _audit_key(env: Mapping[str, str], name: str, raw: str | None = None) -> str:
    """An Ed25519 key as 64 hex digits (empty stays empty)."""
    raw = env.get(name, "") if raw is None else raw
    if not raw.strip():
        return ""
    return parse_key_hex(raw, name)


@dataclass(frozen=True)
class Settings:
    # --- services -------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"  # verdicts, scan states, idempotency keys
    broker_url: str = ""  # Celery broker; empty means "same as redis_url"
    s3_endpoint_url: str = "http://127.0.0.1:8333"  # empty string means AWS's default endpoint
    s3_region: str = "us-east-1"
    s3_access_key: str = field(default="tenderscan", repr=False)
    s3_secret_key: str = field(default="tenderscan-secret", repr=False)
    s3_bucket: str = "tenderscan"  # scans/ and verdicts/ live here
    models_bucket: str = "tenderscan-models"  # the model registry
    # --- transport security (workers/core/transport.py, docs/OPERATIONS.md "Transport security") -------
    redis_tls_ca_file: str = ""  # rediss://: CA bundle that signed the Redis server's certificate
    #                              (empty = the system trust store); used for the broker too
    redis_tls_cert_file: str = ""  # rediss://: client certificate, when Redis asks for one (tls-auth-clients)
    redis_tls_key_file: str = ""  # rediss://: its private key (a file mounted from a Secret)
    redis_tls_insecure: bool = False  # development only: permits ssl_cert_reqs=none in a rediss:// URL
    s3_ca_file: str = ""  # https:// S3 endpoint: CA bundle for boto3's verify= (empty = the system store)
    # --- direct upload (producer/uploads.py) ------------------------------------------------------
    s3_public_endpoint_url: str = ""  # the S3 endpoint POS devices reach, used in presigned POSTs;
    #                                   empty = s3_endpoint_url (fine when both sides see the same host)
    upload_expiry_s: int = 300  # a presigned POST (POST /v1/uploads) is good for this many seconds
    # --- edge -----------------------------------------------------------------------------------
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # sha256(key) -> tenant
    public_url: str = ""  # prefix for poll URLs in 202 answers; empty = relative URLs
    max_body_bytes: int = 10 * 1024 * 1024  # largest accepted upload
    max_pixels: int = 24_000_000  # Pillow decompression-bomb cap (width * height)
    min_side: int = 32  # smaller images cannot hold a readable bill
    max_side: int = 8000  # longest accepted side in pixels
    # --- tenants and limits (producer/tenants.py, producer/limits.py); a tenant record may override ---
    key_hmac_secret: str = field(default=DEV_KEY_HMAC_SECRET, repr=False)  # API keys are stored as
    #                                       HMAC-SHA256(this, key); changing it invalidates every registry key
    tenant_refresh_s: int = 5  # the API re-reads the tenant registry (S3) this often: revocation bound
    tenant_rate_per_s: float = 500.0  # requests per second per tenant, shared by all API replicas (0 = no limit)
    tenant_burst: int = 1000  # token bucket size: requests a tenant may send at once
    tenant_max_in_flight: int = 50_000  # scans accepted and not yet verdicted, per tenant (0 = no limit)
    in_flight_ttl_s: int = 900  # an in-flight entry older than this ages out (a scan lost without a verdict)
    # --- verdicts -------------------------------------------------------------------------------
    verdict_ttl_s: int = 24 * 3600  # how long Redis keeps scan states and verdicts
    idempotency_ttl_s: int = 24 * 3600  # how long an Idempotency-Key is remembered
    # --- worker ---------------------------------------------------------------------------------
    model: str = DEFAULT_MODEL_PATH  # checkpoint path, or "registry:ALIAS" / "registry:VERSION"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_batch_size: int = 32  # most scans in one forward pass
    max_wait_ms: int = 10  # longest a scan waits for its batch to fill
    worker_concurrency: int = 0  # scans in flight per worker process; 0 = 2 * max_batch_size
    worker_processes: int = 1  # `tenderscan worker` runs this many Celery worker processes under one
    #                            supervisor (workers/runtime/supervisor.py); 0 = one per CPU this process may use
    task_soft_time_limit_s: int = 60  # a scan taking longer than this is failed and redelivered
    task_time_limit_s: int = 90  # hard kill
    visibility_timeout_s: int = 300  # Redis redelivers an unacked message after this long
    max_attempts: int = 5  # deliveries of one scan before it is judged poison (an `error` verdict);
    #                        a delivery that ends in an S3/Redis outage does not count (workers/runtime/retrying.py)
    transient_retry_window_s: int = 900  # a scan retries through S3/Redis outages this long after its first
    #                                      one, then gets an `error` verdict (infrastructure_unavailable)
    shutdown_grace_s: int = 25  # SIGTERM: finish the scans in hand for at most this long, then hand the
    #                             rest back to the queue and exit; keep below the pod's termination grace
    scans_per_message: int = 16  # bulk submissions: scans per `process_scans` message (1 = one message each)
    compile: bool = False  # torch.compile the model at load (CUDA mostly; the warm-up pays the compile)
    metrics_port: int = 0  # worker: serve Prometheus /metrics on this port (0 = off); the API serves /metrics
    # --- reconciler (S3 is the source of truth; see workers/runtime/reconcile.py) -------------------------
    reconcile_interval_s: int = 15  # how often one worker re-checks accepted scans (0 = never)
    reconcile_stale_after_s: int = 60  # a scan with no verdict this long after (re)enqueue is re-enqueued
    reconcile_days: int = 2  # how many daily partitions back the reconciler looks
    heartbeat_file: str = "/tmp/tenderscan-worker.heartbeat"  # liveness: refreshed while the batcher runs
    # --- audit (docs/AUDIT.md) ------------------------------------------------------------------
    audit_signing_key: str = field(default="", repr=False)  # Ed25519 seed, 64 hex; empty = audit records
    #                                                         are written unsigned (a warning; `audit verify` flags them)
    audit_public_keys: tuple[str, ...] = ()  # published Ed25519 public keys (64 hex) `audit verify` trusts
    # --- logs -----------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = True

    def __post_init__(self) -> None:
        # A rediss:// URL carries its TLS options as query parameters (redis-py and kombu read them
        # there), so every Redis client built from it verifies the server: workers/core/transport.py.
        from workers.core.transport import RedisTls, secure_redis_url

        tls = RedisTls(self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file,
                       self.redis_tls_insecure)
        object.__setattr__(self, "redis_url", secure_redis_url(self.redis_url, tls, PREFIX + "REDIS_URL"))
        object.__setattr__(self, "broker_url", secure_redis_url(self.broker_url, tls, PREFIX + "BROKER_URL"))

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
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        s = cls(
            redis_url=_str(env, PREFIX + "REDIS_URL", d.redis_url),
            broker_url=_str(env, PREFIX + "BROKER_URL", d.broker_url),
            s3_endpoint_url=env.get(PREFIX + "S3_ENDPOINT_URL", d.s3_endpoint_url),
            s3_region=_str(env, PREFIX + "S3_REGION", d.s3_region),
            s3_access_key=_str(env, PREFIX + "S3_ACCESS_KEY", d.s3_access_key),
            s3_secret_key=_str(env, PREFIX + "S3_SECRET_KEY", d.s3_secret_key),
            s3_bucket=_str(env, PREFIX + "S3_BUCKET", d.s3_bucket),
            models_bucket=_str(env, PREFIX + "MODELS_BUCKET", d.models_bucket),
            redis_tls_ca_file=_str(env, PREFIX + "REDIS_TLS_CA_FILE", d.redis_tls_ca_file),
            redis_tls_cert_file=_str(env, PREFIX + "REDIS_TLS_CERT_FILE", d.redis_tls_cert_file),
            redis_tls_key_file=_str(env, PREFIX + "REDIS_TLS_KEY_FILE", d.redis_tls_key_file),
            redis_tls_insecure=_bool(env, PREFIX + "REDIS_TLS_INSECURE", d.redis_tls_insecure),
            s3_ca_file=_str(env, PREFIX + "S3_CA_FILE", d.s3_ca_file),
            s3_public_endpoint_url=_str(env, PREFIX + "S3_PUBLIC_ENDPOINT_URL", d.s3_public_endpoint_url).rstrip("/"),
            upload_expiry_s=_int(env, PREFIX + "UPLOAD_EXPIRY_S", d.upload_expiry_s, 1),
            api_keys=parse_api_keys(env.get(PREFIX + "API_KEYS", "")),
            public_url=_str(env, PREFIX + "PUBLIC_URL", d.public_url).rstrip("/"),
            max_body_bytes=_int(env, PREFIX + "MAX_BODY_BYTES", d.max_body_bytes, 1),
            max_pixels=_int(env, PREFIX + "MAX_PIXELS", d.max_pixels, 1),
            min_side=_int(env, PREFIX + "MIN_SIDE", d.min_side, 1),
            max_side=_int(env, PREFIX + "MAX_SIDE", d.max_side, 1),
            key_hmac_secret=_str(env, PREFIX + "KEY_HMAC_SECRET", d.key_hmac_secret),
            tenant_refresh_s=_int(env, PREFIX + "TENANT_REFRESH_S", d.tenant_refresh_s, 1),
            tenant_rate_per_s=_float(env, PREFIX + "TENANT_RATE_PER_S", d.tenant_rate_per_s, 0.0),
            tenant_burst=_int(env, PREFIX + "TENANT_BURST", d.tenant_burst, 1),
            tenant_max_in_flight=_int(env, PREFIX + "TENANT_MAX_IN_FLIGHT", d.tenant_max_in_flight, 0),
            in_flight_ttl_s=_int(env, PREFIX + "IN_FLIGHT_TTL_S", d.in_flight_ttl_s, 1),
            verdict_ttl_s=_int(env, PREFIX + "VERDICT_TTL_S", d.verdict_ttl_s, 1),
            idempotency_ttl_s=_int(env, PREFIX + "IDEMPOTENCY_TTL_S", d.idempotency_ttl_s, 1),
            model=_str(env, PREFIX + "MODEL", d.model),
            device=_str(env, PREFIX + "DEVICE", d.device),
            max_batch_size=_int(env, PREFIX + "MAX_BATCH_SIZE", d.max_batch_size, 1),
            max_wait_ms=_int(env, PREFIX + "MAX_WAIT_MS", d.max_wait_ms, 0),
            worker_concurrency=_int(env, PREFIX + "WORKER_CONCURRENCY", d.worker_concurrency, 0),
            worker_processes=_int(env, PREFIX + "WORKER_PROCESSES", d.worker_processes, 0),
            task_soft_time_limit_s=_int(env, PREFIX + "TASK_SOFT_TIME_LIMIT_S", d.task_soft_time_limit_s, 1),
            task_time_limit_s=_int(env, PREFIX + "TASK_TIME_LIMIT_S", d.task_time_limit_s, 1),
            visibility_timeout_s=_int(env, PREFIX + "VISIBILITY_TIMEOUT_S", d.visibility_timeout_s, 1),
            max_attempts=_int(env, PREFIX + "MAX_ATTEMPTS", d.max_attempts, 1),
            transient_retry_window_s=_int(env, PREFIX + "TRANSIENT_RETRY_WINDOW_S", d.transient_retry_window_s, 1),
            shutdown_grace_s=_int(env, PREFIX + "SHUTDOWN_GRACE_S", d.shutdown_grace_s, 1),
            scans_per_message=_int(env, PREFIX + "SCANS_PER_MESSAGE", d.scans_per_message, 1),
            compile=_bool(env, PREFIX + "COMPILE", d.compile),
            metrics_port=_int(env, PREFIX + "METRICS_PORT", d.metrics_port, 0),
            reconcile_interval_s=_int(env, PREFIX + "RECONCILE_INTERVAL_S", d.reconcile_interval_s, 0),
            reconcile_stale_after_s=_int(env, PREFIX + "RECONCILE_STALE_AFTER_S", d.reconcile_stale_after_s, 1),
            reconcile_days=_int(env, PREFIX + "RECONCILE_DAYS", d.reconcile_days, 1),
            heartbeat_file=_str(env, PREFIX + "HEARTBEAT_FILE", d.heartbeat_file),
            audit_signing_key=_audit_key(env, PREFIX + "AUDIT_SIGNING_KEY"),
            audit_public_keys=tuple(_audit_key(env, PREFIX + "AUDIT_PUBLIC_KEYS", part)
                                    for part in env.get(PREFIX + "AUDIT_PUBLIC_KEYS", "").split(",") if part.strip()),
            log_level=_str(env, PREFIX + "LOG_LEVEL", d.log_level).upper(),
            log_json=_bool(env, PREFIX + "LOG_JSON", d.log_json),
        )
        s.validate()
        return s

    def validate(self) -> None:
        """Cross-field checks: the ones a single variable cannot make on its own."""
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SettingsError(f"{PREFIX}DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")
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
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        if len(self.key_hmac_secret) < 16:
            raise SettingsError(f"{PREFIX}KEY_HMAC_SECRET must be at least 16 characters (32 random bytes, hex, advised)")
        from workers.core.transport import RedisTls, validate_redis_tls, validate_s3_tls

        validate_redis_tls(RedisTls(self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file),
                           {PREFIX + "REDIS_URL": self.redis_url, PREFIX + "BROKER_URL": self.effective_broker_url})
        validate_s3_tls(self.s3_ca_file)
        if self.upload_expiry_s > 3600:
            raise SettingsError(f"{PREFIX}UPLOAD_EXPIRY_S must be at most 3600 (a presigned POST is a bearer grant)")
        for name in ("s3_bucket", "models_bucket"):
            value = getattr(self, name)
            if not (3 <= len(value) <= 63) or not value.replace("-", "").replace(".", "").isalnum():
                raise SettingsError(f"{PREFIX}{name.upper()} {value!r} is not a valid S3 bucket name")

    def with_(self, **changes) -> Settings:
        """A copy with some fields changed (tests and the demo use this)."""
        s = replace(self, **changes)
        s.validate()
        return s


def env_names() -> list[str]:
    """Every environment variable Settings reads (the compose-file test checks them all)."""
    return [PREFIX + f.name.upper() for f in fields(Settings)]
