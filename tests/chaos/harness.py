"""The fault-injection harness: a private stack, a load of unique scans, and a Jepsen-style checker.

    ChaosStack.start(root, ...)   a producer.dev DevStack: a PRIVATE redis-server (free port; never
                                  a Redis already running here), a SeaweedFS, the real API (uvicorn)
                                  and real `celery worker` processes, all children of this process, all
                                  restartable (Redis and S3 come back on the same ports and data dirs)
    Load(stack, n).run(fault)     n unique scans from client threads (each retries 503s and connection
                                  errors with backoff + jitter under ONE Idempotency-Key until it gets a
                                  202); `fault` runs in its own thread once a third of them are accepted
    check(stack, load)            settle, then count for every 202'd scan, from Redis, the S3 audit
                                  records, what the client reads back and the worker logs:
                                      lost          accepted, no verdict anywhere after the settle time
                                      duplicated    more than one `scan_done` event (processed twice)
                                      conflicting   two different decisions/reasons among Redis, S3, client
                                      recovery_s    fault end -> every scan accepted before it has a verdict

The checker never forgives: a scan is lost unless a verdict for it exists in Redis or S3.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import redis

from producer.client import ClientError, TenderscanClient, Unavailable
from producer.dev.stack import DevStack
from workers.core import clock, keys
from workers.core.enums import judged
from workers.core.errors import TenderscanError
from workers.core.schemas import Verdict
from workers.core.storage import S3ObjectStore

TENANT, API_KEY = "acme", "key-acme-chaos"
HOSTILE_DIR = Path(__file__).resolve().parents[1] / "hostile"

# Short reconciler settings: a scan whose message was lost is re-enqueued from its S3 intent
# STALE_AFTER_S after its (re)enqueue, checked every INTERVAL_S. Recovery bound ~ STALE + INTERVAL.
RECONCILE_INTERVAL_S = 2
RECONCILE_STALE_AFTER_S = 10
WORKER_ENV = {
    "TENDERSCAN_RECONCILE_INTERVAL_S": str(RECONCILE_INTERVAL_S),
    "TENDERSCAN_RECONCILE_STALE_AFTER_S": str(RECONCILE_STALE_AFTER_S),
    "TENDERSCAN_MAX_BATCH_SIZE": "16",  # 32 task threads: enough batching, sane on 2 cores
    "TENDERSCAN_SHUTDOWN_GRACE_S": "20",
    "TENDERSCAN_LOG_JSON": "true",
    "PYTHONUNBUFFERED": "1",  # a SIGKILLed worker must not take its last log lines with it
    "OMP_NUM_THREADS": "1",
}


# --- the stack ------------------------------------------------------------------------------------
class ChaosStack(DevStack):
    """A DevStack with the API and its workers running, and ways to read the truth back."""

    @classmethod
    def start(cls, root: Path, workers: int = 1, appendonly: bool = True,
              worker_env: dict[str, str] | None = None) -> ChaosStack:
        stack = super().start(root, appendonly=appendonly, api_keys={TENANT: API_KEY},
                              extra=dict(WORKER_ENV, **(worker_env or {})))
        try:
            stack.start_api(timeout=90)
            for _ in range(workers):
                stack.start_worker()
            for w in stack.workers:
                w.wait_for_log("ready.", timeout=180)
        except Exception:
            stack.stop()
            raise
        return stack

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True, socket_timeout=10)

    def objects(self) -> S3ObjectStore:
        return S3ObjectStore.from_settings(self.settings)


# --- counting transport (how many 503s and connection errors the clients absorbed) --------------
class CountingTransport(httpx.BaseTransport):
    """One per client (closing a client closes its transport); `statuses` and `lock` may be shared."""

    def __init__(self, statuses: Counter | None = None, lock: threading.Lock | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.statuses: Counter = Counter() if statuses is None else statuses
        self.lock = lock or threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            resp = self.inner.handle_request(request)
        except httpx.TransportError as exc:
            with self.lock:
                self.statuses["connection_error"] += 1
                self.statuses["connection_error:" + type(exc).__name__] += 1
            raise
        with self.lock:
            self.statuses[str(resp.status_code)] += 1
        return resp

    def close(self) -> None:
        self.inner.close()


# --- the load -------------------------------------------------------------------------------------
@dataclass
class Submission:
    index: int
    kind: str  # "synthetic" or the hostile file's name
    scan_id: str | None = None  # set on 202
    accepted_at: float | None = None  # epoch seconds
    status: int | None = None  # final HTTP status (202, or the 4xx that refused it)
    reason: str | None = None  # the 4xx reason
    attempts: int = 0  # submit() calls (each already retries inside the client)


def synthetic_pool(size: int = 48) -> list[bytes]:
    from models.synth import make_scans

    return [data for data, _ in make_scans(size, seed=4242, counterfeit_ratio=0.5)]


def hostile_corpus() -> list[tuple[str, bytes, str]]:
    expected = json.loads((HOSTILE_DIR / "expected.json").read_text())
    return [(name, (HOSTILE_DIR / "files" / name).read_bytes(), outcome) for name, outcome in sorted(expected.items())]


class Load:
    """n unique scans (one Idempotency-Key each), submitted by `clients` threads; a fault in parallel."""

    def __init__(self, stack: ChaosStack, n: int, clients: int = 8, hostile_every: int = 0,
                 pool: list[bytes] | None = None, give_up_after_s: float = 60.0,
                 progress=None) -> None:
        self.stack, self.n, self.clients = stack, n, clients
        self.pool = pool or synthetic_pool()
        self.hostile = hostile_corpus() if hostile_every else []
        self.hostile_every = hostile_every
        self.give_up_after_s = give_up_after_s
        self.statuses: Counter = Counter()  # HTTP statuses and connection errors, over all clients
        self._status_lock = threading.Lock()
        self.subs = [Submission(i, self._kind(i)) for i in range(n)]
        self._next = 0
        self._lock = threading.Lock()
        self.accepted = 0
        self.progress = progress or (lambda *_: None)
        self.started_at = self.ended_at = 0.0
        self.fault_start: float | None = None
        self.fault_end: float | None = None
        self.fault_error: str | None = None
        self.gave_up = 0

    def _kind(self, i: int) -> str:
        if self.hostile_every and i % self.hostile_every == self.hostile_every - 1:
            return self.hostile[(i // self.hostile_every) % len(self.hostile)][0]
        return "synthetic"

    def _body(self, sub: Submission) -> bytes:
        if sub.kind == "synthetic":
            return self.pool[sub.index % len(self.pool)]
        return next(data for name, data, _ in self.hostile if name == sub.kind)

    def _take(self) -> Submission | None:
        with self._lock:
            if self._next >= self.n:
                return None
            sub = self.subs[self._next]
            self._next += 1
            return sub

    def _client_loop(self) -> None:
        client = TenderscanClient(self.stack.api_url, API_KEY, timeout=15, retries=6, backoff_s=0.2, max_backoff_s=4.0,
                                  transport=CountingTransport(self.statuses, self._status_lock))
        try:
            while (sub := self._take()) is not None:
                self._submit(client, sub)
        finally:
            client.close()

    def _submit(self, client: TenderscanClient, sub: Submission) -> None:
        key = uuid.uuid4().hex  # one key for every retry of this scan: a lost 202 cannot make a second scan
        data = self._body(sub)
        deadline = time.monotonic() + self.give_up_after_s
        while True:
            sub.attempts += 1
            try:
                answer = client.submit(data, store_id="store-chaos", terminal_id=f"pos-{sub.index % 16}",
                                       idempotency_key=key, content_type="image/jpeg")
            except Unavailable:
                if time.monotonic() > deadline:
                    with self._lock:
                        self.gave_up += 1
                    return
                time.sleep(random.uniform(0.5, 2.0))
                continue
            except ClientError as exc:
                sub.status, sub.reason = exc.status, exc.reason
                return
            sub.status, sub.scan_id, sub.accepted_at = 202, answer["scan_id"], time.time()
            with self._lock:
                self.accepted += 1
                if self.accepted % max(1, self.n // 10) == 0:
                    self.progress(f"accepted {self.accepted}/{self.n}")
            return

    def run(self, fault=None, fault_at: float = 0.3) -> None:
        """Submit everything; start `fault(stack)` once fault_at * n scans were accepted."""
        self.started_at = time.time()
        fault_thread = None
        if fault is not None:
            def run_fault() -> None:
                while self.accepted < fault_at * self.n and self._next < self.n:
                    time.sleep(0.05)
                self.fault_start = time.time()
                try:
                    fault(self.stack)
                except Exception as exc:  # noqa: BLE001 - reported, and fails the check
                    self.fault_error = f"{type(exc).__name__}: {exc}"
                self.fault_end = time.time()
            fault_thread = threading.Thread(target=run_fault, name="fault", daemon=True)
            fault_thread.start()
        with ThreadPoolExecutor(self.clients) as pool:
            for f in [pool.submit(self._client_loop) for _ in range(self.clients)]:
                f.result()
        if fault_thread is not None:
            fault_thread.join()
        self.ended_at = time.time()


# --- the checker ----------------------------------------------------------------------------------
@dataclass
class Result:
    fault: str
    scans: int  # submissions attempted
    accepted: int  # 202'd
    refused_4xx: int  # hostile files the edge refused (not accepted, not lost)
    gave_up: int  # the client got no 202 within Load.give_up_after_s of retrying (never accepted)
    http_500: int  # 500 answers (the API must answer 503 for what it cannot do, never 500)
    refused_wrongly: int  # synthetic (good) scans the API refused with a non-retryable status
    http_503: int  # 503 answers the clients absorbed by retrying
    connection_errors: int  # connection errors the clients absorbed by retrying
    lost: int
    duplicated: int  # scans with more than one scan_done event
    redelivered: int  # scans whose stored verdict came from delivery attempt > 1
    conflicting: int  # scans with two different decisions/reasons among Redis, S3, client
    rewritten: int  # same decision, different verdict bytes (e.g. Redis lost the first one)
    audit_missing: int  # verdict in Redis, no audit record in S3
    error_verdicts: int  # scans that ended as `error` (poison cap)
    unclaimed_verdicts: int  # audit records for scans no client was told about
    hostile_mismatch: int  # hostile files whose outcome differs from tests/hostile/expected.json
    workers_died: int  # workers that exited without being told to
    recovery_s: float | None  # fault end -> last verdict of a scan accepted before the fault ended
    resume_s: float | None  # fault end -> first verdict of a scan accepted after it
    max_latency_s: float | None  # slowest scan, 202 -> verdict
    duration_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """lost = 0 and conflicting = 0 (the issue's bar), and no client left with nothing but 503s, no
        500, no good scan refused, no hostile file answered wrongly, no worker dead, the fault ran."""
        return (self.lost == 0 and self.conflicting == 0 and self.gave_up == 0 and self.http_500 == 0
                and self.refused_wrongly == 0 and self.hostile_mismatch == 0 and self.workers_died == 0
                and not any(n.startswith("FAULT") for n in self.notes))

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


def _audit_index(objects: S3ObjectStore) -> dict[str, str]:
    return {k.rsplit("/", 1)[-1].removesuffix(".json"): k for k in objects.list("verdicts/")}


def settle(stack: ChaosStack, scan_ids: set[str], timeout_s: float, quiet_s: float = 30.0, progress=None) -> float:
    """Wait until every scan has an audit record, or until nothing new landed for quiet_s / timeout_s."""
    start = time.monotonic()
    last_progress, last_count = start, -1
    while True:
        try:
            have = len(scan_ids & set(_audit_index(stack.objects())))
        except TenderscanError:
            have = last_count
        now = time.monotonic()
        if have != last_count:
            last_count, last_progress = have, now
            if progress:
                progress(f"settle: {have}/{len(scan_ids)} audit records")
        if have >= len(scan_ids) or now - start > timeout_s or now - last_progress > quiet_s:
            return now - start
        time.sleep(1.0)


def _decode(raw) -> Verdict | None:
    try:
        return None if raw is None else Verdict.decode(raw)
    except Exception:  # noqa: BLE001 - an undecodable verdict counts as a conflict below
        return None


def _scan_done_counts(logs: list[Path]) -> Counter:
    counts: Counter = Counter()
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"scan_done"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "scan_done" and event.get("scan_id"):
                counts[event["scan_id"]] += 1
    return counts


def _hostile_ok(expected: str, sub: Submission, verdict: Verdict | None) -> bool:
    if sub.status != 202:  # refused at the edge: must be the expected reason
        return expected not in ("ok",) and (sub.reason == expected or
                                            (expected == "ok_or_unreadable" and sub.reason == "image_unreadable"))
    if verdict is None:
        return False
    if expected == "ok":
        return judged(verdict.decision, verdict.reason)
    if expected == "ok_or_unreadable":
        return judged(verdict.decision, verdict.reason) or verdict.reason == "image_unreadable"
    return verdict.decision == "rejected" and verdict.reason == expected


def check(stack: ChaosStack, load: Load, fault: str, settle_timeout_s: float = 120.0, progress=None,
          expected_exits: int = 0) -> Result:
    accepted = {s.scan_id: s for s in load.subs if s.scan_id}
    settle(stack, set(accepted), settle_timeout_s, progress=progress)
    objects = stack.objects()
    audit_keys = _audit_index(objects)

    def s3_verdict(sid: str):
        key = audit_keys.get(sid)
        return None if key is None else objects.get(key).data

    with ThreadPoolExecutor(8) as pool:
        in_s3 = dict(zip(accepted, pool.map(s3_verdict, accepted), strict=True))
    r = stack.redis_client()
    ids = list(accepted)
    in_redis: dict[str, str | None] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        in_redis.update(zip(chunk, r.mget([keys.verdict_key(s) for s in chunk]), strict=True))
    client = TenderscanClient(stack.api_url, API_KEY, timeout=15, retries=3)

    def observed(sid: str):
        try:
            view = client.get(sid)
        except ClientError as exc:
            return f"http_{exc.status}"
        return view.get("verdict")

    with ThreadPoolExecutor(8) as pool:
        seen = dict(zip(accepted, pool.map(observed, accepted), strict=True))
    client.close()
    done_counts = _scan_done_counts([w.log_path for w in stack.workers + stack.retired])
    expected_hostile = {name: outcome for name, _, outcome in load.hostile}

    lost = conflicting = rewritten = audit_missing = errors = redelivered = hostile_mismatch = 0
    poll_misses = 0
    lost_ids: list[str] = []
    completed: dict[str, float] = {}
    for sid, sub in accepted.items():
        v_s3, v_redis = _decode(in_s3[sid]), _decode(in_redis[sid])
        v_seen = seen[sid]
        if isinstance(v_seen, str):
            poll_misses += 1
            v_seen = None
        else:
            v_seen = _decode(v_seen) if v_seen is not None else None
        present = [v for v in (v_redis, v_s3, v_seen) if v is not None]
        if not present:
            lost += 1
            lost_ids.append(sid)
            continue
        if v_s3 is None:
            audit_missing += 1
        if len({(v.decision, v.reason) for v in present}) > 1 or any(
                raw is not None and _decode(raw) is None for raw in (in_s3[sid], in_redis[sid])):
            conflicting += 1
        elif len({v.encode() for v in present}) > 1:
            rewritten += 1
        final = v_s3 or v_redis or v_seen
        errors += final.decision == "error"
        redelivered += final.attempt > 1
        completed[sid] = clock.parse_time(final.timestamps.completed).timestamp()
        if sub.kind != "synthetic" and not _hostile_ok(expected_hostile[sub.kind], sub, final):
            hostile_mismatch += 1
    for sub in load.subs:
        if sub.kind != "synthetic" and sub.status != 202 and not _hostile_ok(expected_hostile[sub.kind], sub, None):
            hostile_mismatch += 1
    unclaimed = len(set(audit_keys) - set(accepted))
    duplicated = sum(1 for sid in accepted if done_counts.get(sid, 0) > 1)

    recovery = resume = None
    if load.fault_end is not None and completed:
        before = [completed[sid] for sid, sub in accepted.items() if sid in completed and sub.accepted_at <= load.fault_end]
        after = [completed[sid] for sid, sub in accepted.items() if sid in completed and sub.accepted_at > load.fault_end]
        if before:
            recovery = round(max(0.0, max(before) - load.fault_end), 2)
        if after:
            resume = round(max(0.0, min(after) - load.fault_end), 2)
    latencies = [completed[sid] - accepted[sid].accepted_at for sid in completed]
    died = sum(1 for w in stack.workers if not w.alive())
    notes = []
    if lost_ids:
        notes.append(f"lost scan ids (first 20): {', '.join(lost_ids[:20])}")
    if load.gave_up:
        notes.append(f"{load.gave_up} scans got no 202 within {load.give_up_after_s:.0f}s of retrying")
    if load.fault_error:
        notes.append(f"FAULT FAILED: {load.fault_error}")
    if poll_misses:
        notes.append(f"{poll_misses} accepted scans the API's GET could not answer (404/5xx) at the end")
    if expected_exits:
        notes.append(f"{expected_exits} worker(s) stopped on purpose")
    st = load.statuses
    return Result(
        fault=fault, scans=load.n, accepted=len(accepted),
        refused_4xx=sum(1 for s in load.subs if s.status and 400 <= s.status < 500), gave_up=load.gave_up,
        http_500=st.get("500", 0),
        refused_wrongly=sum(1 for s in load.subs if s.kind == "synthetic" and s.status not in (None, 202)),
        http_503=st.get("503", 0), connection_errors=st.get("connection_error", 0),
        lost=lost, duplicated=duplicated, redelivered=redelivered, conflicting=conflicting, rewritten=rewritten,
        audit_missing=audit_missing, error_verdicts=errors, unclaimed_verdicts=unclaimed,
        hostile_mismatch=hostile_mismatch, workers_died=died, recovery_s=recovery, resume_s=resume,
        max_latency_s=round(max(latencies), 2) if latencies else None,
        duration_s=round(time.time() - load.started_at, 1), notes=notes,
    )
