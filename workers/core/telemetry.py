"""Prometheus metrics: one registry per process, observed where the pipeline already times its stages.

    tenderscan_stage_seconds{stage}        histogram  queue_wait, fetch, decode, batch_wait, forward,
                                                      infer, publish: the same numbers as the `scan_done`
                                                      event (pipeline._Stages); `tenderscan bench` reads
                                                      its per-stage breakdown from here
    tenderscan_stage_cpu_seconds{stage}    counter    CPU time (the running thread's user + system,
                                                      time.thread_time) spent in each stage of the
                                                      worker: CPU_STAGES; `tenderscan bench` divides
                                                      it by the scans drained (CPU per scan, per stage)
    tenderscan_batch_size                  histogram  scans per forward pass (`batch_done`)
    tenderscan_batch_forward_seconds       histogram  one forward pass (stack + forward + copy back)
    tenderscan_scans_total{decision}       counter    verdicts published, by decision
    tenderscan_errors_total{reason}        counter    rejected / expired / error verdicts by reason code,
                                                      and task retries as reason="retry:<ErrorClass>"
    tenderscan_queue_depth                 gauge      LLEN of the scans queue (messages, not scans)   [API]
    tenderscan_queue_oldest_age_seconds    gauge      now - submitted_at of the oldest queued message [API]
    tenderscan_requests_aborted_total{reason}  counter  requests whose body never arrived whole:
                                                      client_disconnected, request_timeout (408)    [API]
    tenderscan_backlog                     gauge      queued + in flight (kombu's `unacked` hash): what
                                                      KEDA's prometheus trigger scales on, since the list
                                                      alone hides what workers prefetched; every API
                                                      replica reports the same value (take `max`) [API]
    tenderscan_review_queue_depth{tenant}  gauge      scans awaiting a person (ZCARD of the tenant's
                                                      review queue), read at scrape time           [API]
    tenderscan_review_queue_oldest_age_seconds{tenant}  gauge  now - submission of the oldest of them
                                                      (ZRANGE 0 0 WITHSCORES); 0 when empty          [API]
    tenderscan_reviews_total{reviewer}     counter    reviews recorded (rate() * 3600: per hour)    [API]
    tenderscan_reviews_undone_total{reviewer}  counter  reviews taken back within the undo window  [API]
    tenderscan_review_agreement_total{model_decision, label}  counter  the model's decision against
                                                      the reviewer's label, one per review          [API]
    tenderscan_review_signs_total{sign, model, reviewer}  counter  per sign of the model, one per
                                                      review: model=detected|not, reviewer=seen|not [API]
    tenderscan_webhook_deliveries_total{outcome, reason}, tenderscan_webhook_attempt_seconds,
    tenderscan_webhook_delivery_lag_seconds{type}      the deliverer's: see the webhooks section below

Model rollout (workers/runtime/models_live.py, rollout.py), per worker process:
    tenderscan_model_info{alias,version}           gauge    1 for each version this process serves now
    tenderscan_model_swaps_total{alias}            counter  versions swapped in between batches
    tenderscan_model_load_failures_total{alias}    counter  versions that failed to download, verify or load
    tenderscan_model_load_failed{alias}            gauge    1 while the alias names a version that failed
                                                            (the old version keeps serving): alert on it
    tenderscan_model_scans_total{alias,version,decision}  counter  verdicts each served model decided
    tenderscan_model_errors_total{alias,version}   counter  scans whose forward pass raised
    tenderscan_canary_rollbacks_total{reason}      counter  canaries this process rolled back

Fraud and drift (every model verdict; docs/OPERATIONS.md alert rules, infra/prometheus/):
    tenderscan_store_verdicts_total{tenant,store,decision}          counter
    tenderscan_terminal_counterfeits_total{tenant,store,terminal}   counter  counterfeit verdicts only
                                                                    (terminals are many; genuine ones
                                                                    would multiply the series for nothing)
    tenderscan_score{tenant}                       histogram p_counterfeit, ten 0.1-wide buckets: score
                                                            drift is a PSI of this against its own
                                                            7-day shape, in recording rules
                                                            (infra/prometheus/alerts.yaml)

Workers serve `/metrics` on TENDERSCAN_METRICS_PORT (a small HTTP thread, `serve`); the API serves
`GET /metrics` with the queue gauges computed at scrape time (`QueueCollector`). Under a threads or
solo pool one worker process is one exporter; a prefork pool would need one port per child (not done).
This module imports prometheus-client only (no torch), so the edge can use it.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily

from workers.core.clock import parse_time
from workers.core.enums import Decision
from workers.core.keys import QUEUE, REVIEW_TENANTS_KEY, UNACKED_KEY, review_queue_key

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("queue_wait", "fetch", "decode", "batch_wait", "forward", "infer", "publish")
# 0.5 ms .. 60 s: a zero-cost stand-in stage and a long queue wait both land in a real bucket
_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REGISTRY = CollectorRegistry(auto_describe=True)
STAGE_SECONDS = Histogram("tenderscan_stage_seconds", "Time a scan spends in each pipeline stage",
                          ["stage"], registry=REGISTRY, buckets=_TIME_BUCKETS)
BATCH_SIZE = Histogram("tenderscan_batch_size", "Scans per forward pass", registry=REGISTRY, buckets=_SIZE_BUCKETS)
BATCH_FORWARD = Histogram("tenderscan_batch_forward_seconds", "One batch's stack + forward + copy back",
                          registry=REGISTRY, buckets=_TIME_BUCKETS)
SCANS = Counter("tenderscan_scans", "Verdicts published, by decision", ["decision"], registry=REGISTRY)
ERRORS = Counter("tenderscan_errors", "Scans that ended without inference (by reason) and task retries",
                 ["reason"], registry=REGISTRY)

# --- model rollout -------------------------------------------------------------------------------
MODEL_INFO = Gauge("tenderscan_model_info", "1 for each model version this process serves", ["alias", "version"],
                   registry=REGISTRY)
MODEL_SWAPS = Counter("tenderscan_model_swaps", "Model versions swapped in between batches", ["alias"],
                      registry=REGISTRY)
MODEL_LOAD_FAILURES = Counter("tenderscan_model_load_failures", "Model versions that failed to load", ["alias"],
                              registry=REGISTRY)
MODEL_LOAD_FAILED = Gauge("tenderscan_model_load_failed", "1 while the alias names a version that failed to load",
                          ["alias"], registry=REGISTRY)
MODEL_SCANS = Counter("tenderscan_model_scans", "Verdicts decided by each served model",
                      ["alias", "version", "decision"], registry=REGISTRY)
MODEL_ERRORS = Counter("tenderscan_model_errors", "Scans whose forward pass raised, by served model",
                       ["alias", "version"], registry=REGISTRY)
CANARY_ROLLBACKS = Counter("tenderscan_canary_rollbacks", "Canaries rolled back by this process", ["reason"],
                           registry=REGISTRY)
# --- fraud and drift -----------------------------------------------------------------------------
STORE_VERDICTS = Counter("tenderscan_store_verdicts", "Model verdicts by tenant, store and decision",
                         ["tenant", "store", "decision"], registry=REGISTRY)
TERMINAL_COUNTERFEITS = Counter("tenderscan_terminal_counterfeits", "Counterfeit verdicts by terminal",
                                ["tenant", "store", "terminal"], registry=REGISTRY)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
SCORE = Histogram("tenderscan_score", "p_counterfeit of model verdicts", ["tenant"], registry=REGISTRY,
                  buckets=SCORE_BUCKETS)


def observe_model_loaded(alias: str, version: str, previous: str | None) -> None:
    if previous is not None and previous != version:
        observe_model_unloaded(alias, previous)
    MODEL_INFO.labels(alias=alias, version=version).set(1)
    MODEL_LOAD_FAILED.labels(alias=alias).set(0)


def observe_model_unloaded(alias: str, version: str) -> None:
    if (alias, version) in _served_series():
        MODEL_INFO.remove(alias, version)


def _served_series() -> set[tuple[str, str]]:
    return {(s.labels["alias"], s.labels["version"]) for m in MODEL_INFO.collect() for s in m.samples}


def observe_model_load_failed(alias: str) -> None:
    MODEL_LOAD_FAILURES.labels(alias=alias).inc()
    MODEL_LOAD_FAILED.labels(alias=alias).set(1)


def observe_verdict(tenant: str, store: str, terminal: str, decision: str, p_counterfeit: float | None) -> None:
    """One model verdict, for the fraud and drift alerts (rejections without inference are not counted)."""
    if p_counterfeit is None:
        return
    STORE_VERDICTS.labels(tenant=tenant, store=store, decision=decision).inc()
    if decision == Decision.COUNTERFEIT.value:
        TERMINAL_COUNTERFEITS.labels(tenant=tenant, store=store, terminal=terminal).inc()
    SCORE.labels(tenant=tenant).observe(p_counterfeit)


# the labelled children, looked up once: `.labels()` costs a lock and a dict build per call, seven
# times per published scan
_STAGE_CHILDREN = tuple((stage + "_ms", STAGE_SECONDS.labels(stage=stage)) for stage in STAGES)
_SCANS_BY_DECISION = {d.value: SCANS.labels(decision=d.value) for d in Decision}


def observe_scan(decision: str, reason: str | None, stages_ms: dict[str, float]) -> None:
    """One published verdict. `stages_ms` holds `<stage>_ms` keys (the scan_done event's fields)."""
    (_SCANS_BY_DECISION.get(decision) or SCANS.labels(decision=decision)).inc()
    if reason:
        ERRORS.labels(reason=reason).inc()
    for key, child in _STAGE_CHILDREN:
        ms = stages_ms.get(key)
        if ms is not None:
            child.observe(max(0.0, ms) / 1000)


# Where a worker's CPU goes, measured on the thread that does the work (time.thread_time: this thread's
# user + system). What no stage claims (Celery's consumer and task dispatch, thread hand-offs, the
# batcher's loop, the exporter, torch's own intra-op threads when it runs more than one) is the
# process's CPU minus their sum: the bench reports it as "other".
CPU_STAGES = (
    "fetch",          # S3 GET of the image (boto3: signing, HTTP, response parsing)
    "checksum",       # length + sha256 of the stored bytes against the message's
    "decode",         # imaging.decode: bytes -> upright RGB image
    "canonical",      # the checkpoint's per-scan preprocessing: find the note, warp, balance, flatten
    "batch",          # the batcher thread: stack + normalise the batch, split its outputs per scan
    "forward",        # the forward pass and the copy back to Python lists
    "decide",         # probabilities -> decision fields -> the Verdict
    "verdict_store",  # Redis: start_scans at the start of a message, the SET NX script at its end
    "audit_write",    # the signed audit record PUT to S3
    "events",         # the scan_done log event and its metrics
)
STAGE_CPU = Counter("tenderscan_stage_cpu_seconds", "CPU seconds (the working thread's user + system) per stage",
                    ["stage"], registry=REGISTRY)
_CPU_CHILDREN = {stage: STAGE_CPU.labels(stage=stage) for stage in CPU_STAGES}


class cpu_stage:  # noqa: N801 - used as a context manager, named like one
    """`with cpu_stage("decode"): ...` adds the block's thread CPU time to that stage."""

    __slots__ = ("_child", "_t0")

    def __init__(self, stage: str) -> None:
        self._child = _CPU_CHILDREN[stage]

    def __enter__(self) -> cpu_stage:
        self._t0 = time.thread_time()
        return self

    def __exit__(self, *exc) -> None:
        self._child.inc(max(0.0, time.thread_time() - self._t0))


def _cpu(families) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in families:
        if family.name != "tenderscan_stage_cpu_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                stage = sample.labels.get("stage")
                out[stage] = out.get(stage, 0.0) + sample.value
    return out


def stage_cpu_s(registry: CollectorRegistry = REGISTRY) -> dict[str, float]:
    """{stage: CPU seconds so far} from this process's counters."""
    return _cpu(registry.collect())


def parse_stage_cpu(text: str) -> dict[str, float]:
    """The same from a scraped /metrics body."""
    from prometheus_client.parser import text_string_to_metric_families

    return _cpu(text_string_to_metric_families(text))


def observe_batch(size: int, forward_ms: float) -> None:
    BATCH_SIZE.observe(size)
    BATCH_FORWARD.observe(forward_ms / 1000)


def observe_error(reason: str) -> None:
    ERRORS.labels(reason=reason).inc()


def _means(families) -> dict[str, dict[str, float]]:
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in families:
        if family.name != "tenderscan_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if sample.name.endswith("_sum"):
                sums[stage] = sums.get(stage, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = counts.get(stage, 0.0) + sample.value
    return {s: {"mean_ms": round(1000 * sums.get(s, 0.0) / counts[s], 3), "count": int(counts[s])}
            for s in STAGES if counts.get(s)}


def stage_means_ms(registry: CollectorRegistry = REGISTRY) -> dict[str, dict[str, float]]:
    """{stage: {"mean_ms", "count"}} from the histograms (the bench's breakdown, in-process)."""
    return _means(registry.collect())


def parse_stage_means(text: str) -> dict[str, dict[str, float]]:
    """The same breakdown from a scraped /metrics body (the bench reads worker processes this way)."""
    from prometheus_client.parser import text_string_to_metric_families

    return _means(text_string_to_metric_families(text))


# --- the queue, seen from Redis (API side) ------------------------------------------------------
def oldest_submitted_at(raw: bytes | str | None) -> str | None:
    """submitted_at of the scan in one kombu message (a Redis list entry), or None if unreadable."""
    if raw is None:
        return None
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        first = args[0]
        if isinstance(first, dict) and "scans" in first:  # a MultiScanMessage
            first = first["scans"][0]
        return str(first["submitted_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class QueueCollector:
    """Queue depth and the oldest queued scan's age, read from Redis at scrape time.

    `client` is a sync redis-py client (decode_responses either way). Redis errors give no samples
    rather than a failed scrape: a missing series is what an alert on absent() catches.
    """

    def __init__(self, client, queue: str = QUEUE, clock=lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.queue = queue
        self.clock = clock

    def collect(self):
        import redis

        depth = GaugeMetricFamily("tenderscan_queue_depth", "Messages waiting in the scans queue")
        age = GaugeMetricFamily("tenderscan_queue_oldest_age_seconds", "Age of the oldest queued scan")
        backlog = GaugeMetricFamily("tenderscan_backlog", "Messages queued plus delivered and not yet acked")
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.queue)
            pipe.lindex(self.queue, -1)  # kombu LPUSHes and BRPOPs: the oldest is at the right end
            pipe.hlen(UNACKED_KEY)
            length, oldest, in_flight = pipe.execute()
        except redis.RedisError:
            return
        depth.add_metric([], float(length))
        yield depth
        backlog.add_metric([], float(length + in_flight))
        yield backlog
        submitted = oldest_submitted_at(oldest)
        seconds = 0.0
        if submitted:
            seconds = max(0.0, (self.clock() - parse_time(submitted)).total_seconds())
        age.add_metric([], seconds)
        yield age


class ReviewQueueCollector:
    """Per tenant: scans awaiting review and the oldest one's age, read at scrape time (one SMEMBERS,
    then one pipeline of ZCARD + ZRANGE 0 0 WITHSCORES per tenant). Like QueueCollector, a Redis error
    gives no samples rather than a failed scrape."""

    def __init__(self, client, clock=time.time) -> None:
        self.client = client
        self.clock = clock

    def collect(self):
        import redis

        depth = GaugeMetricFamily("tenderscan_review_queue_depth", "Scans awaiting review", labels=["tenant"])
        age = GaugeMetricFamily("tenderscan_review_queue_oldest_age_seconds",
                                "Age of the oldest scan awaiting review (0 when none)", labels=["tenant"])
        try:
            tenants = sorted(t.decode() if isinstance(t, bytes) else t
                             for t in self.client.smembers(REVIEW_TENANTS_KEY))
            pipe = self.client.pipeline(transaction=False)
            for tenant in tenants:
                pipe.zcard(review_queue_key(tenant))
                pipe.zrange(review_queue_key(tenant), 0, 0, withscores=True)
            rows = pipe.execute() if tenants else []
        except redis.RedisError:
            return
        now = self.clock()
        for tenant, count, head in zip(tenants, rows[::2], rows[1::2], strict=True):
            depth.add_metric([tenant], float(count))
            age.add_metric([tenant], max(0.0, now - float(head[0][1])) if head else 0.0)
        yield depth
        yield age


class ReviewMetrics:
    """The review console's counters, on the API's registry (one per app; the desk observes each review)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reviews = Counter("tenderscan_reviews", "Reviews recorded, by reviewer", ["reviewer"], registry=registry)
        self.undone = Counter("tenderscan_reviews_undone", "Reviews taken back, by reviewer", ["reviewer"],
                              registry=registry)
        self.agreement = Counter("tenderscan_review_agreement", "Reviews by the model's decision and the "
                                 "reviewer's label", ["model_decision", "label"], registry=registry)
        self.signs = Counter("tenderscan_review_signs", "Per sign of the model, per review: did the model detect "
                             "it, did the reviewer see it", ["sign", "model", "reviewer"], registry=registry)

    def observe_review(self, reviewer: str, model_decision: str, label: str, signs: list[str] | tuple[str, ...],
                       detected: list[str], seen: list[str]) -> None:
        """One recorded review. `signs` is every sign the model scores (the verdict's), so a sign neither
        detected nor seen counts too: agreement per sign is (detected,seen)+(not,not) over the total."""
        self.reviews.labels(reviewer=reviewer).inc()
        self.agreement.labels(model_decision=model_decision, label=label).inc()
        for sign in signs:
            self.signs.labels(sign=sign, model="detected" if sign in detected else "not",
                              reviewer="seen" if sign in seen else "not").inc()

    def observe_undo(self, reviewer: str) -> None:
        self.undone.labels(reviewer=reviewer).inc()


def api_registry(redis_client=None) -> CollectorRegistry:
    """The API's registry: the queue gauges (the edge runs no pipeline stages of its own). Without a
    client, empty: the app registers its QueueCollector once its Redis client exists (lifespan)."""
    registry = CollectorRegistry(auto_describe=False)
    if redis_client is not None:
        registry.register(QueueCollector(redis_client))
    return registry


def requests_aborted(registry: CollectorRegistry) -> Counter:
    """tenderscan_requests_aborted_total{reason}: the API's requests whose body never arrived whole."""
    return Counter("tenderscan_requests_aborted", "Requests whose body never arrived whole, by reason "
                   "(client_disconnected, request_timeout)", ["reason"], registry=registry)


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)


def serve(port: int, addr: str = "0.0.0.0"):
    """Start this process's exporter (a daemon thread); returns its HTTP server (`shutdown()` stops it),
    or None when port is 0 (off). The worker context starts it once, at worker_ready."""
    if port <= 0:
        return None
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server


# --- webhooks: the deliverer process (workers/webhooks/deliverer.py, docs/WEBHOOKS.md) ---------------
WEBHOOK_DELIVERIES = Counter("tenderscan_webhook_deliveries", "Webhook delivery attempts settled, by outcome "
                             "(delivered, retrying, gave_up, parked, dropped) and failure reason",
                             ["outcome", "reason"], registry=REGISTRY)
WEBHOOK_ATTEMPT = Histogram("tenderscan_webhook_attempt_seconds", "One webhook POST, connect to answer",
                            registry=REGISTRY, buckets=_TIME_BUCKETS)
# 10 ms .. a day: a healthy receiver's events land in the low buckets, an outage's in the hours
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600,
                24 * 3600)
WEBHOOK_LAG = Histogram("tenderscan_webhook_delivery_lag_seconds", "Event timestamp (when it happened) to the "
                        "receiver's 2xx, per delivered event, by event type", ["type"], registry=REGISTRY,
                        buckets=_LAG_BUCKETS)


def observe_webhook(outcome: str, reason: str | None, latency_ms: float | None) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome, reason=reason or "").inc()
    if latency_ms is not None:
        WEBHOOK_ATTEMPT.observe(latency_ms / 1000)


def observe_webhook_lag(event_type: str, lag_s: float) -> None:
    """A delivered event: how long after it happened the receiver had it (retries and outages included)."""
    WEBHOOK_LAG.labels(type=event_type).observe(max(0.0, lag_s))
