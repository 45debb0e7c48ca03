"""Every name tenderscan gives to something outside its own processes: the queue and task names, every
Redis key and channel, every S3 key layout, and how long each record lives. Nothing else writes a key.

Redis keys (ours all start `ts:`), and who writes them:
    ts:scan:{scan_id}          hash    scan state: tenant, status, store/terminal, image ref, attempts
                                       (deliveries that count toward the poison cap), after an outage
                                       transient_failures, transient_since, transient_at    [edge, worker]
                                       TTL: settings.verdict_ttl_s
    ts:verdict:{scan_id}       string  the verdict JSON; written once with SET NX           [worker]
                                       TTL: settings.verdict_ttl_s
    ts:done:{scan_id}          pubsub  a message when the verdict lands; the API psubscribes
                                       DONE_CHANNEL_PATTERN once per process                [worker]
    ts:idem:{tenant}:{key}     string  {scan_id, sha256, submitted_at} of an Idempotency-Key [edge]
                                       TTL: settings.idempotency_ttl_s
    ts:rate:{tenant}           hash    the tenant's token bucket: tokens, ts                [edge]
                                       TTL: one full refill (producer/limits.py)
    ts:inflight:{tenant}       zset    scan ids accepted, not yet verdicted, score = acceptance time
                                       (unix s); save_verdict removes, older than
                                       settings.in_flight_ttl_s age out                     [edge, worker]
    ts:inflight-tenants        set     tenants that have had scans in flight: where the reconciler's
                                       outstanding pass starts (refreshed by create_scan)   [edge]
                                       TTL: settings.in_flight_ttl_s
    ts:keyuse:{tenant}         hash    key_id -> last use (time); lossy, at most every
                                       KEY_USE_EVERY_S per key and API process               [edge]
    ts:wh:endpoints:{tenant}   hash    endpoint id -> Endpoint JSON (url, signing secrets) [CLI, API]
    ts:wh:state:{tenant}:{ep}  hash    the endpoint's health: failing_since, disabled_at     [deliverer, CLI]
    ts:wh:msg:{msg_id}         string  a webhook event: tenant, type and the exact body sent  [worker, emit]
                                       TTL: settings.webhook_retention_s
    ts:wh:due                  zset    deliveries "{tenant}|{ep}|{msg_id}", score = when due (unix s); a
                                       claimed one is pushed WEBHOOK_LEASE_S ahead, so a deliverer that
                                       dies loses nothing                                   [emit, deliverer]
    ts:wh:try:{delivery}       hash    attempts, first_at (unix s) of one delivery          [deliverer]
                                       TTL: settings.webhook_retention_s
    ts:wh:parked:{tenant}:{ep} zset    deliveries held while the endpoint is disabled        [deliverer, enable]
    ts:wh:log:{tenant}:{ep}    list    the endpoint's delivery log, newest first, WEBHOOK_LOG_MAX JSON
                                       records (outcome, status, latency, attempt)           [deliverer]
    ts:reconcile:lock          string  held by the worker reconciling now                   [worker]
                                       TTL: settings.reconcile_interval_s
    ts:reconcile:sweep         string  the Redis run_id at the reconciler's last full S3 sweep: a missing
                                       key or another run_id (a restart, a failover) makes a sweep due
                                       TTL: settings.reconcile_sweep_interval_s             [worker]
    ts:rollout:{version}:{w}   hash    a canary's outcomes in evaluation window w (unix s // window),
                                       fields "{arm}:{decision}" and "{arm}:error", arm = canary or
                                       production; every worker adds its counts  [worker; runtime/rollout.py]
                                       TTL: 3 windows
    ts:shadow:{version}        stream  a shadow version's answers beside production's, one entry per
                                       sampled scan (never returned to a client)   [worker; shadow.py]
                                       MAXLEN ~SHADOW_STREAM_MAXLEN, TTL SHADOW_TTL_S after the last entry
    ts:rollout:lock:{version}  string  held by the worker rolling a canary back (one rollback) [worker]
                                       TTL: ROLLBACK_LOCK_TTL_S
    ts:review:queue:{tenant}   zset    scans awaiting a person (every `review` verdict, a QC sample of
                                       the auto-decided), score = submission time (unix s): oldest
                                       first; publish adds, recording a review removes   [worker, edge]
    ts:review-tenants          set     tenants that have had a review queue: where an auditor's
                                       cross-tenant queue starts                            [worker]
    ts:review:claim:{scan_id}  string  the reviewer judging the scan now (a lease)          [edge]
                                       TTL: settings.review_claim_ttl_s
    ts:review:{scan_id}        string  the scan's review (Review JSON), the bytes of its S3 record;
                                       GET /v1/scans/{id} reads it                          [edge]
                                       TTL: settings.verdict_ttl_s, from the review
    ts:review:session:{digest} string  a console login: {reviewer, scope}; digest = sha256 of the
                                       cookie's token (the token itself is never stored)    [edge]
                                       TTL: settings.review_session_ttl_s
    tenderscan.scans           list    the queue (QUEUE): kombu pushes task messages here    [edge, reconciler]
    unacked                    hash    kombu's own: messages delivered and not yet acked (read by the
                                       API's backlog gauge, core/telemetry.py)              [kombu]

S3 keys, scans bucket (settings.s3_bucket); `dt` is the UTC submission date, so a scan's image,
intent and audit record share a partition:
    scans/dt=D/tenant=T/{scan_id}.{jpg|png}    the uploaded image; metadata holds sha256
    scans/dt=D/tenant=T/{scan_id}.json         the scan's intent (ScanMessage): the durable source of
                                               truth the reconciler re-enqueues from
    verdicts/dt=D/tenant=T/{scan_id}.json      the audit record (Verdict.encode()); metadata holds its
                                               Ed25519 signature (workers/audit/signing.py)
    uploads/tenant=T/{upload_id}               a direct upload (POST /v1/uploads, a presigned POST); a
                                               scan by reference points its image_key here
    reviews/dt=R/tenant=T/{scan_id}.json       a person's review of the scan (Review.encode()), signed like an
                                               audit record; R is the REVIEW's UTC date (not the scan's), so
                                               a review made after its scan's day was sealed lands in a day
                                               not sealed yet and the next seal covers it
    manifests/dt=D/tenant=T/manifest.json      the sealed day: record digests, Merkle root, previous
                                               manifest's digest, signed (workers/audit/manifests.py)
    tenants/{tenant}.json                      the tenant record: API keys as HMAC digests, limit
                                               overrides (`tenderscan tenant`; producer/tenants.py)

S3 keys, models bucket (settings.models_bucket; workers/core/registry.py):
    models/{version}/model.pt          the checkpoint, byte for byte
    models/{version}/evaluation.json   the evaluation it was published with
    models/{version}/meta.json         written last: a version exists once this exists
    aliases/{alias}.json               {alias, version, promoted_at, previous} (+ by, reason, forced)
    events/dt=D/{at}-{action}-{version}.json   a rollout audit record: a forced promotion, a canary
                                       rolled back, a canary finished; Ed25519-signed like a verdict's
                                       (workers/audit/model_events.py)
"""

from __future__ import annotations

# --- the queue ------------------------------------------------------------------------------------
TASK_NAME = "tenderscan.process_scan"  # the one-scan task; its only argument is ScanMessage.encode()
MULTI_TASK_NAME = "tenderscan.process_scans"  # bulk: one argument, MultiScanMessage.encode() (several scans)
QUEUE = "tenderscan.scans"  # the Redis list Celery pushes scan messages onto (KEDA watches it)
UNACKED_KEY = "unacked"  # kombu's Redis transport keeps delivered, unacked messages in this hash


# --- Redis keys -----------------------------------------------------------------------------------
def scan_key(scan_id: str) -> str:
    return f"ts:scan:{scan_id}"


def verdict_key(scan_id: str) -> str:
    return f"ts:verdict:{scan_id}"


def done_channel(scan_id: str) -> str:
    return f"ts:done:{scan_id}"


DONE_CHANNEL_PATTERN = "ts:done:*"  # the API's one listener subscribes to this pattern


def idempotency_key(tenant: str, key: str) -> str:
    return f"ts:idem:{tenant}:{key}"


def rate_key(tenant: str) -> str:
    return f"ts:rate:{tenant}"


def in_flight_key(tenant: str) -> str:
    return f"ts:inflight:{tenant}"


IN_FLIGHT_TENANTS_KEY = "ts:inflight-tenants"  # set: tenants with in-flight zsets (a '-', not ':', so no
#                                              tenant's ts:inflight:{tenant} can have this name)
RECONCILE_SWEEP_KEY = "ts:reconcile:sweep"  # Redis run_id at the reconciler's last S3 sweep


# --- webhooks (workers/webhooks/, docs/WEBHOOKS.md) -------------------------------------------------
WEBHOOK_DUE_KEY = "ts:wh:due"  # zset of deliveries by due time: the durable schedule the deliverer drains
WEBHOOK_LOG_MAX = 1000  # delivery log records kept per endpoint (older ones are trimmed)


def webhook_endpoints_key(tenant: str) -> str:
    return f"ts:wh:endpoints:{tenant}"


def webhook_state_key(tenant: str, endpoint_id: str) -> str:
    return f"ts:wh:state:{tenant}:{endpoint_id}"


def webhook_message_key(msg_id: str) -> str:
    return f"ts:wh:msg:{msg_id}"


def webhook_delivery_id(tenant: str, endpoint_id: str, msg_id: str) -> str:
    """A delivery is one event to one endpoint; '|' appears in no tenant, endpoint or message id."""
    return f"{tenant}|{endpoint_id}|{msg_id}"


def webhook_try_key(delivery_id: str) -> str:
    return f"ts:wh:try:{delivery_id}"


def webhook_parked_key(tenant: str, endpoint_id: str) -> str:
    return f"ts:wh:parked:{tenant}:{endpoint_id}"


def webhook_log_key(tenant: str, endpoint_id: str) -> str:
    return f"ts:wh:log:{tenant}:{endpoint_id}"


def key_use_key(tenant: str) -> str:
    return f"ts:keyuse:{tenant}"


KEY_USE_EVERY_S = 60  # an API process records a key's last use at most this often (seconds)
RECONCILE_LOCK_KEY = "ts:reconcile:lock"  # held by the worker reconciling now (TTL = the interval)


# --- Redis keys: the review console (producer/review/, workers/core/review_queue.py) ---------------
def review_queue_key(tenant: str) -> str:
    return f"ts:review:queue:{tenant}"


REVIEW_TENANTS_KEY = "ts:review-tenants"  # set: tenants with a review queue (a '-': no queue key can clash)


def review_claim_key(scan_id: str) -> str:
    return f"ts:review:claim:{scan_id}"


def review_key(scan_id: str) -> str:
    return f"ts:review:{scan_id}"  # scan ids are 32 hex digits: never 'queue:…', 'claim:…' or 'session:…'


def review_session_key(token_digest: str) -> str:
    return f"ts:review:session:{token_digest}"


REVIEW_UNDO_S = 60  # a reviewer may take a review back this long after recording it (seconds)


# --- S3 keys: the scans bucket --------------------------------------------------------------------
IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}  # the format allow-list, Pillow names -> suffix
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def _dt(submitted_at: str) -> str:
    return submitted_at[:10]  # a clock.format_time() string -> YYYY-MM-DD


def image_s3_key(tenant: str, scan_id: str, submitted_at: str, fmt: str) -> str:
    return f"scans/dt={_dt(submitted_at)}/tenant={tenant}/{scan_id}.{IMAGE_EXTENSIONS[fmt]}"


def intent_s3_key(tenant: str, scan_id: str, submitted_at: str) -> str:
    return f"scans/dt={_dt(submitted_at)}/tenant={tenant}/{scan_id}.json"


def verdict_s3_key(tenant: str, scan_id: str, submitted_at: str) -> str:
    return f"verdicts/dt={_dt(submitted_at)}/tenant={tenant}/{scan_id}.json"


def scans_day_prefix(date: str) -> str:
    """Every image and intent of a day (YYYY-MM-DD): what the reconciler lists."""
    return f"scans/dt={date}/"


def verdicts_day_prefix(date: str, tenant: str | None = None) -> str:
    """Every audit record of a day (and tenant): what `audit seal / verify / pull` and the reconciler list."""
    return f"verdicts/dt={date}/" + (f"tenant={tenant}/" if tenant else "")


UPLOADS_PREFIX = "uploads/"  # direct uploads; expire them with a bucket lifecycle rule (docs/OPERATIONS.md)


def upload_s3_key(tenant: str, upload_id: str) -> str:
    """The one key a presigned POST may write: the tenant's prefix and a server-chosen id."""
    return f"{UPLOADS_PREFIX}tenant={tenant}/{upload_id}"


def is_upload_key(key: str) -> bool:
    return key.startswith(UPLOADS_PREFIX)


REVIEWS_PREFIX = "reviews/"  # people's reviews (the review console), one signed record per review


def review_s3_key(tenant: str, scan_id: str, reviewed_at: str) -> str:
    """A review's signed record, partitioned by the REVIEW's date (see the module docstring)."""
    return f"{REVIEWS_PREFIX}dt={_dt(reviewed_at)}/tenant={tenant}/{scan_id}.json"


def reviews_day_prefix(date: str, tenant: str | None = None) -> str:
    """Every review record of a day (and tenant): what `audit seal / verify` list beside the verdicts."""
    return f"{REVIEWS_PREFIX}dt={date}/" + (f"tenant={tenant}/" if tenant else "")


def manifest_s3_key(date: str, tenant: str) -> str:
    return f"manifests/dt={date}/tenant={tenant}/manifest.json"


TENANTS_PREFIX = "tenants/"  # the tenant registry: one JSON record per tenant


def tenant_s3_key(tenant: str) -> str:
    return f"{TENANTS_PREFIX}{tenant}.json"


# --- S3 keys: the models bucket (the model registry) ----------------------------------------------
MODELS_PREFIX = "models/"
ALIASES_PREFIX = "aliases/"


def model_s3_key(version: str) -> str:
    return f"{MODELS_PREFIX}{version}/model.pt"


def evaluation_s3_key(version: str) -> str:
    return f"{MODELS_PREFIX}{version}/evaluation.json"


def model_meta_s3_key(version: str) -> str:
    return f"{MODELS_PREFIX}{version}/meta.json"


def alias_s3_key(alias: str) -> str:
    return f"{ALIASES_PREFIX}{alias}.json"


# --- rollouts: canary tallies (Redis) and rollout audit records (models bucket) -------------------------
MODEL_EVENTS_PREFIX = "events/"  # models bucket: signed records of forced promotions and rollbacks
ROLLBACK_LOCK_TTL_S = 60  # seconds: one worker rolls a canary back; the others find it done


def rollout_tally_key(version: str, window: int) -> str:
    """A canary version's outcome counts in one evaluation window (window = unix seconds // length)."""
    return f"ts:rollout:{version}:{window}"


def rollout_lock_key(version: str) -> str:
    return f"ts:rollout:lock:{version}"


def model_event_s3_key(at: str, action: str, version: str) -> str:
    """`at` is a clock.format_time string: its first ten characters are the date partition."""
    stamp = at.replace(":", "").replace("-", "")
    return f"{MODEL_EVENTS_PREFIX}dt={at[:10]}/{stamp}-{action}-{version}.json"


def model_events_day_prefix(date: str) -> str:
    return f"{MODEL_EVENTS_PREFIX}dt={date}/"


SHADOW_STREAM_MAXLEN = 200_000  # entries kept per shadow version (approximate trim)
SHADOW_TTL_S = 7 * 24 * 3600  # a shadow stream outlives its last entry by a week: time to compare


def shadow_stream_key(version: str) -> str:
    return f"ts:shadow:{version}"
