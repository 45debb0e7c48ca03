"""Scan states and verdicts in Redis: the only module that speaks Redis commands for them.

A scan's life in Redis (its keys are in keys.py):
    create_scan       ts:scan:{id} = {status: queued, tenant, ...}          (edge, after the S3 write)
                      + ZADD ts:inflight:{tenant} id (the tenant's scans in flight, producer/limits.py)
                      + SADD ts:inflight-tenants tenant (where the reconciler's outstanding pass starts)
    start_scans       per scan: its verdict if one is stored (a redelivery),  (worker, on dequeue; one
                      else status queued -> processing,                      round trip per message)
                      attempts += 1
    refund_attempt    attempts -= 1, transient_failures += 1, transient_since  (worker, when the delivery
                      (first), transient_at (last)                           ended in an outage)
    save_verdict      ts:verdict:{id} SET NX, status -> done, PUBLISH done,  (worker; one Lua script)
                      ZREM ts:inflight:{tenant} id

`save_verdict` is the idempotency point of the whole pipeline: the first verdict written wins and is
returned to every later writer, so a redelivered scan can never end with two different verdicts.
redis-py's exceptions are translated to StoreUnavailable here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from workers.core import clock, keys
from workers.core.enums import ScanStatus
from workers.core.errors import StoreUnavailable
from workers.core.schemas import ScanMessage, Verdict
from workers.core.settings import Settings

# KEYS: per scan, four: its verdict key, scan key, done channel, the tenant's in-flight zset. ARGV: ttl
# seconds, then per scan two: its verdict JSON, its scan id. Returns per scan the verdict that is stored
# after the call (ours, or the one there first). Every call removes the scan from in-flight, so a
# redelivered scan's verdict cleans up after a crash. One scan (save_verdict) or a multi-scan message's
# scans (save_verdicts) per call: the same statements per scan, one round trip.
_SAVE_VERDICTS = """
local ttl = ARGV[1]
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 2 + 2 * i
  local stored = ARGV[a]
  if not redis.call('SET', KEYS[k + 1], ARGV[a], 'NX', 'EX', ttl) then
    stored = redis.call('GET', KEYS[k + 1])
  end
  redis.call('HSET', KEYS[k + 2], 'status', 'done')
  redis.call('EXPIRE', KEYS[k + 2], ttl)
  redis.call('ZREM', KEYS[k + 4], ARGV[a + 1])
  redis.call('PUBLISH', KEYS[k + 3], 'done')
  out[i + 1] = stored
end
return out
"""

# KEYS: per scan, two: its verdict key, scan key. A delivery's first step, one round trip for all its
# scans: per scan, the verdict already stored (a redelivery: nothing is changed), or else
# queued -> processing (a done scan never moves back) and its attempt number, counted.
_START_SCANS = """
local out = {}
for i = 1, #KEYS, 2 do
  local stored = redis.call('GET', KEYS[i])
  if stored then
    out[#out + 1] = stored
  else
    if redis.call('HGET', KEYS[i + 1], 'status') == 'queued' then
      redis.call('HSET', KEYS[i + 1], 'status', 'processing')
    end
    out[#out + 1] = redis.call('HINCRBY', KEYS[i + 1], 'attempts', 1)
  end
end
return out
"""

# KEYS: scan key. ARGV: now (ISO time). A delivery that ended in an outage gives its attempt back
# (workers/runtime/retrying.py) and records when the scan's outages began and when the last one ended.
# A scan whose state is gone (Redis lost it) is left alone: no hash without a TTL is created.
_REFUND_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[1], 'attempts', -1) < 0 then
  redis.call('HSET', KEYS[1], 'attempts', 0)
end
redis.call('HINCRBY', KEYS[1], 'transient_failures', 1)
redis.call('HSETNX', KEYS[1], 'transient_since', ARGV[1])
redis.call('HSET', KEYS[1], 'transient_at', ARGV[1])
return 1
"""


# KEYS: the sweep key. ARGV: Redis's run_id now, the sweep interval (s). The reconciler's S3 sweep is due
# when the key is gone (expired, or Redis lost its data) or holds another run_id (a restart or a failover
# since the last sweep): then it is claimed for this run_id, atomically, so one worker sweeps.
_CLAIM_SWEEP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


# KEYS: idempotency key. ARGV: scan_id, or "" for any. Deletes the claim (if it is that scan's).
_RELEASE_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v and (ARGV[1] == '' or cjson.decode(v)['scan_id'] == ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis unavailable ({type(exc).__name__})") from None
    except redis.ResponseError as exc:
        # e.g. LOADING after a restart, or MISCONF: retryable from our side
        raise StoreUnavailable(f"Redis refused the command ({str(exc).split()[0]})") from None


def redis_client(url: str, timeout_s: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=30, decode_responses=True)


class VerdictStore:
    def __init__(self, client: redis.Redis, ttl_s: int = 24 * 3600, in_flight_ttl_s: int = 900) -> None:
        self.r = client
        self.ttl_s = ttl_s
        self.in_flight_ttl_s = in_flight_ttl_s  # the in-flight zset expires when idle this long
        self._save = client.register_script(_SAVE_VERDICTS)
        self._start = client.register_script(_START_SCANS)
        self._refund = client.register_script(_REFUND_ATTEMPT)
        self._release = client.register_script(_RELEASE_CLAIM)
        self._claim_sweep = client.register_script(_CLAIM_SWEEP)

    @classmethod
    def from_settings(cls, settings: Settings) -> VerdictStore:
        return cls(redis_client(settings.redis_url), settings.verdict_ttl_s, settings.in_flight_ttl_s)

    def ping(self) -> None:
        with _translate():
            self.r.ping()

    # --- edge side ------------------------------------------------------------------------------
    def create_scan(self, msg: ScanMessage) -> None:
        key = keys.scan_key(msg.scan_id)
        fields = {"status": ScanStatus.QUEUED.value, "tenant": msg.tenant, "store_id": msg.store_id,
                  "terminal_id": msg.terminal_id, "submitted_at": msg.submitted_at,
                  "image_key": msg.image_key, "attempts": 0}
        in_flight = keys.in_flight_key(msg.tenant)
        with _translate():
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl_s)
            pipe.zadd(in_flight, {msg.scan_id: clock.parse_time(msg.submitted_at).timestamp()})
            pipe.expire(in_flight, self.in_flight_ttl_s)
            pipe.sadd(keys.IN_FLIGHT_TENANTS_KEY, msg.tenant)
            pipe.expire(keys.IN_FLIGHT_TENANTS_KEY, self.in_flight_ttl_s)
            pipe.execute()

    def restore_scan(self, msg: ScanMessage) -> bool:
        """Recreate a scan state Redis lost (the reconciler, from the S3 intent). True if it was missing."""
        key = keys.scan_key(msg.scan_id)
        with _translate():
            if self.r.hsetnx(key, "tenant", msg.tenant):
                self.create_scan(msg)
                return True
        return False

    def mark_requeued(self, scan_id: str, at: str) -> None:
        """Remember when the reconciler last re-enqueued this scan (so it waits before the next time)."""
        with _translate():
            self.r.hset(keys.scan_key(scan_id), "requeued_at", at)

    def claim_idempotency(self, tenant: str, key: str, scan_id: str, sha256: str, submitted_at: str,
                          ttl_s: int) -> tuple[str, str, str] | None:
        """Remember key -> (scan_id, sha256, submitted_at). None if we claimed it, else the earlier claim."""
        value = json.dumps({"scan_id": scan_id, "sha256": sha256, "submitted_at": submitted_at})
        with _translate():
            if self.r.set(keys.idempotency_key(tenant, key), value, nx=True, ex=ttl_s):
                return None
            earlier = self.r.get(keys.idempotency_key(tenant, key))
        if earlier is None:  # expired between SET and GET: try once more
            return self.claim_idempotency(tenant, key, scan_id, sha256, submitted_at, ttl_s)
        data = json.loads(earlier)
        return data["scan_id"], data["sha256"], data.get("submitted_at", "")

    def release_idempotency(self, tenant: str, key: str, scan_id: str | None = None) -> None:
        """Undo a claim whose scan was not accepted. With `scan_id`, only if the claim is still that scan's."""
        with _translate():
            self._release(keys=[keys.idempotency_key(tenant, key)], args=[scan_id or ""])

    def forget_scan(self, scan_id: str) -> None:
        """Drop the state of a scan that was never durably accepted (no intent in S3)."""
        with _translate():
            self.r.delete(keys.scan_key(scan_id))

    def get_scan(self, scan_id: str) -> dict[str, str] | None:
        with _translate():
            data = self.r.hgetall(keys.scan_key(scan_id))
        return data or None

    # --- worker side ----------------------------------------------------------------------------
    def start_scans(self, scan_ids: list[str]) -> list[Verdict | int]:
        """A delivery's first step, one round trip for all its scans: per scan, its stored verdict (a
        redelivery; nothing changes) or else its attempt number (1 on the first delivery), counted."""
        if not scan_ids:
            return []
        script_keys = [key for sid in scan_ids for key in (keys.verdict_key(sid), keys.scan_key(sid))]
        with _translate():
            replies = self._start(keys=script_keys)
        return [Verdict.decode(r) if isinstance(r, str | bytes) else int(r) for r in replies]

    def refund_attempt(self, scan_id: str, at: str) -> bool:
        """Give back the attempt start_scans counted: this delivery ended in an outage, not a crash.
        Also records the outage (transient_since, transient_at = `at`). False if the scan state is gone."""
        return self.refund_attempts([scan_id], at) == [True]

    def refund_attempts(self, scan_ids: list[str], at: str) -> list[bool]:
        """refund_attempt for each, pipelined (multi-scan messages)."""
        if not scan_ids:
            return []
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for sid in scan_ids:
                self._refund(keys=[keys.scan_key(sid)], args=[at], client=pipe)
            return [bool(n) for n in pipe.execute()]

    def get_scans(self, scan_ids: list[str]) -> list[dict[str, str] | None]:
        """get_scan for each, pipelined."""
        if not scan_ids:
            return []
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for sid in scan_ids:
                pipe.hgetall(keys.scan_key(sid))
            return [data or None for data in pipe.execute()]

    def save_verdict(self, verdict: Verdict) -> Verdict:
        """Store the verdict unless one exists; return the one that is stored. Publishes `done`."""
        return self.save_verdicts([verdict])[0][0]

    # --- several scans in one round trip (multi-scan messages) --------------------------------------
    def save_verdicts(self, verdicts: list[Verdict]) -> list[tuple[Verdict, str]]:
        """save_verdict for each, in one script call: the same SET NX guarantee per scan.

        Returns (winner, its stored JSON) per verdict, so the audit record can be those exact bytes."""
        if not verdicts:
            return []
        encoded = [v.encode() for v in verdicts]
        script_keys = [key for v in verdicts for key in _save_keys(v)]
        args: list = [self.ttl_s]
        for v, enc in zip(verdicts, encoded, strict=True):
            args += [enc, v.scan_id]
        with _translate():
            stored = self._save(keys=script_keys, args=args)
        return [(v, enc) if raw == enc else (Verdict.decode(raw), raw)  # ours won: no need to parse it back
                for v, enc, raw in zip(verdicts, encoded, stored, strict=True)]

    def get_verdict(self, scan_id: str) -> Verdict | None:
        with _translate():
            raw = self.r.get(keys.verdict_key(scan_id))
        return None if raw is None else Verdict.decode(raw)

    # --- the reconciler (workers/reconcile.py) --------------------------------------------------------
    def in_flight_tenants(self) -> list[str]:
        with _translate():
            return sorted(self.r.smembers(keys.IN_FLIGHT_TENANTS_KEY))

    def stale_in_flight(self, tenant: str, accepted_before: float, offset: int = 0,
                        count: int = 500) -> list[tuple[str, float]]:
        """(scan id, acceptance time) of the tenant's in-flight scans accepted before `accepted_before`
        (unix s), oldest first; the fresh ones are never read."""
        with _translate():
            return [(sid, float(score)) for sid, score in self.r.zrangebyscore(
                keys.in_flight_key(tenant), "-inf", repr(accepted_before), start=offset, num=count,
                withscores=True)]

    def drop_in_flight(self, tenant: str, scan_id: str) -> None:
        with _translate():
            self.r.zrem(keys.in_flight_key(tenant), scan_id)

    def server_run_id(self) -> str:
        """The Redis server's run_id (new at every start, and on another server after a failover);
        "" where INFO is not permitted."""
        try:
            with _translate():
                return str(self.r.info("server").get("run_id", ""))
        except StoreUnavailable as exc:
            if "refused" not in str(exc):
                raise
            return ""

    def claim_sweep(self, run_id: str, interval_s: int) -> bool:
        """True (and claimed) when the reconciler's S3 sweep is due: see _CLAIM_SWEEP."""
        with _translate():
            return bool(self._claim_sweep(keys=[keys.RECONCILE_SWEEP_KEY], args=[run_id, interval_s]))

    def release_sweep(self) -> None:
        """A sweep that failed part-way is due again at the next pass."""
        with _translate():
            self.r.delete(keys.RECONCILE_SWEEP_KEY)

    # --- canary tallies (workers/runtime/rollout.py) -------------------------------------------------
    def add_rollout_counts(self, version: str, window: int, counts: dict[str, int], ttl_s: int) -> None:
        """Add one worker's canary/production outcome counts to the version's window (HINCRBY each)."""
        if not counts:
            return
        key = keys.rollout_tally_key(version, window)
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            pipe.expire(key, ttl_s)
            pipe.execute()

    def rollout_counts(self, version: str, windows: list[int]) -> dict[str, int]:
        """The fleet's counts for a canary version, summed over `windows`."""
        total: dict[str, int] = {}
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            for w in windows:
                pipe.hgetall(keys.rollout_tally_key(version, w))
            for counts in pipe.execute():
                for name, n in counts.items():
                    name = name.decode() if isinstance(name, bytes) else name
                    total[name] = total.get(name, 0) + int(n)
        return total

    # --- shadow answers (workers/runtime/rollout.py, `tenderscan model compare`) -----------------------
    def add_shadow(self, version: str, entry: dict[str, str]) -> None:
        key = keys.shadow_stream_key(version)
        with _translate():
            pipe = self.r.pipeline(transaction=False)
            pipe.xadd(key, entry, maxlen=keys.SHADOW_STREAM_MAXLEN, approximate=True)
            pipe.expire(key, keys.SHADOW_TTL_S)
            pipe.execute()

    def shadow_entries(self, version: str, since_ms: int = 0, page: int = 1000) -> Iterator[dict[str, str]]:
        """A shadow version's entries recorded since `since_ms` (unix ms), oldest first."""
        key, start = keys.shadow_stream_key(version), f"{since_ms}-0"
        while True:
            with _translate():
                batch = self.r.xrange(key, min=start, count=page)
            for entry_id, fields in batch:  # the id's first half is when it was recorded (unix ms)
                yield {"id": _text(entry_id), **{_text(k): _text(v) for k, v in fields.items()}}
            if len(batch) < page:
                return
            last = _text(batch[-1][0])
            ms, seq = last.split("-")
            start = f"{ms}-{int(seq) + 1}"

    def review_labels(self, scan_ids: list[str]) -> dict[str, str]:
        """scan id -> the reviewer's label, for those of `scan_ids` a person has reviewed (the review console's
        ts:review:{scan_id}); the canary's judge reads its counterfeit verdicts' reviews this way."""
        if not scan_ids:
            return {}
        with _translate():
            raw = self.r.mget([keys.review_key(s) for s in scan_ids])
        return {s: json.loads(r)["label"] for s, r in zip(scan_ids, raw, strict=True) if r is not None}

    def claim_rollback(self, version: str) -> bool:
        """True for the one worker that gets to roll this canary version back (SET NX, a short TTL)."""
        with _translate():
            return bool(self.r.set(keys.rollout_lock_key(version), "1", nx=True, ex=keys.ROLLBACK_LOCK_TTL_S))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _save_keys(verdict: Verdict) -> list[str]:
    sid = verdict.scan_id
    return [keys.verdict_key(sid), keys.scan_key(sid), keys.done_channel(sid),
            keys.in_flight_key(verdict.tenant)]
