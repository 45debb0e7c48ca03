"""The review queue in Redis: which scans await a person, who is judging one now, and the reviews made.

    enqueue(verdicts)      the worker, where a verdict is stored (workers/runtime/publish.py): every
                           `review` verdict, and a QC sample of the auto-decided ones (`qc_pick`), go
                           into ts:review:queue:{tenant}, oldest submission first; a scan already
                           reviewed is never queued again (a redelivery republishing its verdict)
    pending(tenants)       the console's queue: (scan id, tenant, submitted unix s, claimed by), the
                           oldest `limit` only (a page: 10,000 waiting scans cost what 200 do)
    depth(tenants)         how many wait in all (ZCARD)
    claim / release       a lease (SET NX + TTL) so two reviewers never judge one scan at once
    record(review)         one script: the claim must be the reviewer's, the review is stored once
                           (SET NX), the scan leaves the queue, the claim is dropped
    undo(scan_id, who)     one script: within keys.REVIEW_UNDO_S of recording and by the same reviewer,
                           the review is dropped and the scan goes back to the queue, claimed by them

The sample is deterministic (a hash of the scan id), so a redelivered scan is sampled or not exactly
as its first delivery was, and an auditor can recompute which scans were drawn. redis-py's
exceptions become StoreUnavailable here, as in verdict_store.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from workers.core import keys
from workers.core.enums import Decision, ReviewSource
from workers.core.schemas import Review, Verdict
from workers.core.verdict_store import _translate

AUTO_DECIDED = (Decision.GENUINE.value, Decision.COUNTERFEIT.value)  # what the QC sample draws from

# KEYS: per scan, two: its review key, the tenant's queue; then the review-tenants set. ARGV: per scan,
# two: submission unix s, scan id; then per scan its tenant. A reviewed scan is never queued again.
_ENQUEUE = """
local n = (#KEYS - 1) / 2
for i = 0, n - 1 do
  if redis.call('EXISTS', KEYS[2 * i + 1]) == 0 then
    redis.call('ZADD', KEYS[2 * i + 2], 'NX', ARGV[2 * i + 1], ARGV[2 * i + 2])
    redis.call('SADD', KEYS[#KEYS], ARGV[2 * n + i + 1])
  end
end
return n
"""

# KEYS: claim key, review key, queue. ARGV: reviewer, review JSON, review TTL s, scan id.
# Returns 1 recorded, 0 not the reviewer's claim, -1 already reviewed.
_RECORD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
  return -1
end
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: review key, queue, claim key. ARGV: expected review JSON, submission unix s, scan id, reviewer,
# claim TTL s. Only the review the caller checked (same bytes) is taken back.
_UNDO = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
return 1
"""


def qc_pick(scan_id: str, rate: float) -> bool:
    """Is this auto-decided scan in the QC sample? The first 8 bytes of sha256(scan id) as a fraction."""
    if rate <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(scan_id.encode()).digest()[:8], "big") / 2**64
    return draw < rate


def source_of(verdict: Verdict, qc_rate: float) -> ReviewSource | None:
    """Why the scan goes to review, or None when it does not."""
    if verdict.decision == Decision.REVIEW:
        return ReviewSource.REVIEW
    if verdict.decision in AUTO_DECIDED and qc_pick(verdict.scan_id, qc_rate):
        return ReviewSource.QC_SAMPLE
    return None


@dataclass(frozen=True)
class Pending:
    """One scan in a review queue."""

    scan_id: str
    tenant: str
    submitted_unix: float
    claimed_by: str | None
    decision: str | None = None  # the verdict's, while Redis still holds it (None after its TTL)

    @property
    def source(self) -> str | None:
        if self.decision is None:
            return None
        return (ReviewSource.REVIEW if self.decision == Decision.REVIEW else ReviewSource.QC_SAMPLE).value


class ReviewQueue:
    def __init__(self, client: redis.Redis, qc_rate: float = 0.0, claim_ttl_s: int = 300,
                 review_ttl_s: int = 24 * 3600) -> None:
        self.r = client
        self.qc_rate = qc_rate
        self.claim_ttl_s = claim_ttl_s
        self.review_ttl_s = review_ttl_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._record = client.register_script(_RECORD)
        self._undo = client.register_script(_UNDO)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings) -> ReviewQueue:
        return cls(client, settings.review_qc_sample, settings.review_claim_ttl_s, settings.verdict_ttl_s)

    # --- the worker's side ------------------------------------------------------------------------
    def enqueue(self, verdicts: Sequence[Verdict]) -> int:
        """Queue the verdicts that need a person (one round trip); returns how many were due."""
        due = [v for v in verdicts if source_of(v, self.qc_rate) is not None]
        if not due:
            return 0
        from workers.core import clock

        key_list = [k for v in due for k in (keys.review_key(v.scan_id), keys.review_queue_key(v.tenant))]
        args: list = [x for v in due for x in (clock.parse_time(v.timestamps.submitted).timestamp(), v.scan_id)]
        with _translate():
            self._enqueue(keys=[*key_list, keys.REVIEW_TENANTS_KEY], args=args + [v.tenant for v in due])
        return len(due)

    # --- the console's side -----------------------------------------------------------------------
    def tenants(self) -> list[str]:
        with _translate():
            return sorted(t.decode() if isinstance(t, bytes) else t for t in self.r.smembers(keys.REVIEW_TENANTS_KEY))

    def pending(self, tenants: Iterable[str], limit: int = 200) -> list[Pending]:
        """The oldest `limit` scans awaiting review across `tenants`, oldest first, with who holds each."""
        tenants = list(tenants)
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for tenant in tenants:
                pipe.zrange(keys.review_queue_key(tenant), 0, limit - 1, withscores=True)
            found = [Pending(_s(m), t, float(score), None)
                     for t, rows in zip(tenants, pipe.execute(), strict=True) for m, score in rows]
            found.sort(key=lambda p: (p.submitted_unix, p.scan_id))
            found = found[:limit]
            if not found:
                return []
            claims = self.r.mget([keys.review_claim_key(p.scan_id) for p in found])
            stored = self.r.mget([keys.verdict_key(p.scan_id) for p in found])
        return [Pending(p.scan_id, p.tenant, p.submitted_unix, _s(c) if c else None, _decision(v))
                for p, c, v in zip(found, claims, stored, strict=True)]

    def depth(self, tenants: Iterable[str]) -> int:
        """How many scans await review across `tenants` (ZCARD each, one round trip)."""
        tenants = list(tenants)
        if not tenants:
            return 0
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for tenant in tenants:
                pipe.zcard(keys.review_queue_key(tenant))
            return int(sum(pipe.execute()))

    def queued_at(self, tenant: str, scan_id: str) -> float | None:
        """The scan's submission time (unix s) if it is in the tenant's queue, else None."""
        with _translate():
            score = self.r.zscore(keys.review_queue_key(tenant), scan_id)
        return None if score is None else float(score)

    def claim(self, scan_id: str, reviewer: str) -> str:
        """Take (or renew) the lease on a scan. Returns who holds it now: `reviewer` if it worked."""
        key = keys.review_claim_key(scan_id)
        with _translate():
            if self.r.set(key, reviewer, nx=True, ex=self.claim_ttl_s):
                return reviewer
            holder = _s(self.r.get(key) or b"")
            if holder == reviewer:
                self.r.expire(key, self.claim_ttl_s)
            return holder or self.claim(scan_id, reviewer)  # it lapsed between the two calls: try again

    def release(self, scan_id: str, reviewer: str) -> None:
        key = keys.review_claim_key(scan_id)
        with _translate():
            if _s(self.r.get(key) or b"") == reviewer:
                self.r.delete(key)

    def record(self, review: Review) -> int:
        """1 stored, 0 the reviewer holds no claim on the scan, -1 the scan was reviewed already."""
        with _translate():
            return int(self._record(keys=[keys.review_claim_key(review.scan_id), keys.review_key(review.scan_id),
                                          keys.review_queue_key(review.tenant)],
                                    args=[review.reviewer, review.encode(), self.review_ttl_s, review.scan_id]))

    def undo(self, review: Review, submitted_unix: float) -> bool:
        """Take `review` back (the caller checked who and when): back in the queue, claimed by its reviewer."""
        with _translate():
            return bool(self._undo(keys=[keys.review_key(review.scan_id), keys.review_queue_key(review.tenant),
                                         keys.review_claim_key(review.scan_id)],
                                   args=[review.encode(), submitted_unix, review.scan_id, review.reviewer,
                                         self.claim_ttl_s]))

    def get_review(self, scan_id: str) -> Review | None:
        with _translate():
            raw = self.r.get(keys.review_key(scan_id))
        return None if raw is None else Review.decode(raw)

    def forget_review(self, review: Review) -> None:
        """Drop a review whose S3 record could not be written, and queue the scan again (unclaimed)."""
        from workers.core import clock

        with _translate():
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(keys.review_key(review.scan_id))
            pipe.zadd(keys.review_queue_key(review.tenant),
                      {review.scan_id: clock.parse_time(review.submitted_at).timestamp()})
            pipe.execute()


def _decision(raw) -> str | None:
    try:
        return json.loads(raw)["decision"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
