"""The reconciler against the in-memory S3 twin and the real Redis: what it re-enqueues, and what not."""

from datetime import timedelta

import pytest

from workers.core import clock, keys, schemas
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.storage import MemoryObjectStore
from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.publish import audit_key
from workers.runtime.reconcile import reconcile_once


@pytest.fixture()
def world(clean_redis):
    return MemoryObjectStore(), VerdictStore(redis_client(clean_redis), ttl_s=600)


def accepted(objects, verdicts, age_s=120.0, with_state=True):
    """A scan as the edge leaves it: image + intent in S3, state in Redis, submitted age_s ago."""
    submitted = clock.parse_time(clock.utcnow()) - timedelta(seconds=age_s)
    submitted_at = clock.format_time(submitted)
    sid = schemas.new_scan_id()
    msg = ScanMessage(sid, "acme", "s1", "t1", keys.image_s3_key("acme", sid, submitted_at, "JPEG"),
                      "ab" * 32, 3, submitted_at)
    objects.put(msg.image_key, b"img")
    objects.put(keys.intent_s3_key("acme", sid, submitted_at), json_bytes(msg))
    if with_state:
        verdicts.create_scan(msg)
    return msg


def json_bytes(msg):
    import json

    return json.dumps(msg.encode()).encode()


def verdict_for(msg):
    return Verdict(msg.scan_id, msg.tenant, msg.store_id, msg.terminal_id, "genuine",
                   InputRef(msg.image_key, msg.sha256, msg.bytes), Timestamps(msg.submitted_at))


def test_stale_scan_without_verdict_is_requeued_once_per_interval(world):
    objects, verdicts = world
    msg = accepted(objects, verdicts)
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert [m.scan_id for m in sent] == [msg.scan_id] and report.requeued == [msg.scan_id]
    again = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert again.fresh == 1 and len(sent) == 1  # requeued_at resets the clock


def test_a_scan_retrying_through_an_outage_is_not_requeued_until_its_retries_stop(world):
    objects, verdicts = world
    msg = accepted(objects, verdicts)  # submitted 120 s ago: stale by submission time alone
    verdicts.start_scans([msg.scan_id])
    verdicts.refund_attempt(msg.scan_id, clock.utcnow())  # a delivery just ended in an outage
    sent = []
    assert reconcile_once(objects, verdicts, sent.append, stale_after_s=60).fresh == 1 and not sent
    long_ago = clock.format_time(clock.parse_time(clock.utcnow()) - timedelta(seconds=61))
    verdicts.r.hset(keys.scan_key(msg.scan_id), "transient_at", long_ago)  # its retry message was lost
    assert reconcile_once(objects, verdicts, sent.append, stale_after_s=60).requeued == [msg.scan_id]


def test_fresh_and_finished_scans_are_left_alone(world):
    objects, verdicts = world
    accepted(objects, verdicts, age_s=5)
    done = accepted(objects, verdicts)
    v = verdicts.save_verdict(verdict_for(done))
    objects.put(audit_key(v), v.encode().encode())
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert sent == [] and report.fresh == 1 and report.done == 1 and report.intents == 2


def test_lost_redis_state_is_restored_from_the_intent(world):
    objects, verdicts = world
    msg = accepted(objects, verdicts, with_state=False)  # Redis restarted without its data
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert report.states_restored == 1 and sent[0] == msg
    state = verdicts.get_scan(msg.scan_id)
    assert state["status"] == "queued" and state["tenant"] == "acme"


def test_verdict_in_redis_without_audit_record_is_repaired_not_requeued(world):
    objects, verdicts = world
    msg = accepted(objects, verdicts)
    v = verdicts.save_verdict(verdict_for(msg))  # the worker died between Redis and S3
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert sent == [] and report.audit_repaired == 1
    assert Verdict.decode(objects.get(audit_key(v)).data) == v


def test_unreadable_intent_is_counted_not_fatal(world):
    objects, verdicts = world
    objects.put(f"scans/dt={clock.utcnow()[:10]}/tenant=acme/{'f' * 32}.json", b"{not json")
    good = accepted(objects, verdicts)
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert report.unreadable == 1 and [m.scan_id for m in sent] == [good.scan_id]


def test_dry_run_counts_but_changes_nothing(world):
    objects, verdicts = world
    msg = accepted(objects, verdicts, with_state=False)
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60, dry_run=True)
    assert report.requeued == [msg.scan_id] and report.states_restored == 1
    assert sent == [] and verdicts.get_scan(msg.scan_id) is None


def test_the_cli_requeues_from_the_real_s3_onto_the_real_broker(s3_settings, clean_redis):
    import json
    import os
    import subprocess
    import sys

    import redis

    from workers.core.storage import S3ObjectStore

    objects = S3ObjectStore.from_settings(s3_settings)
    verdicts = VerdictStore(redis_client(clean_redis), ttl_s=600)
    msg = accepted(objects, verdicts, with_state=False)
    env = dict(os.environ, TENDERSCAN_REDIS_URL=clean_redis, TENDERSCAN_S3_ENDPOINT_URL=s3_settings.s3_endpoint_url,
               TENDERSCAN_S3_ACCESS_KEY=s3_settings.s3_access_key, TENDERSCAN_S3_SECRET_KEY=s3_settings.s3_secret_key,
               TENDERSCAN_S3_BUCKET=s3_settings.s3_bucket)
    out = subprocess.run([sys.executable, "-m", "producer", "reconcile", "--json"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out)["requeued"] == [msg.scan_id]
    queued = redis.Redis.from_url(clean_redis).lrange(keys.QUEUE, 0, -1)
    assert len(queued) == 1 and msg.scan_id.encode() in queued[0]
    assert verdicts.get_scan(msg.scan_id)["status"] == "queued"
    # --outstanding: the pass workers run every interval; the copy just queued holds it back
    verdicts.r.hset(keys.scan_key(msg.scan_id), "requeued_at", "2020-01-01T00:00:00.000000Z")
    out = subprocess.run([sys.executable, "-m", "producer", "reconcile", "--outstanding", "--dry-run", "--json"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    report = json.loads(out)
    assert (report["outstanding"], report["waiting"], report["requeued"], report["intents"]) == (1, 1, [], 0)


# --- what a periodic pass costs: outstanding work, not stored traffic (issue #13, bug 4) ----------------
class CountingStore(MemoryObjectStore):
    """The in-memory S3 twin, counting requests as S3 bills them (a LIST per 1,000 keys listed)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, op: str, n: int = 1) -> None:
        self.calls[op] = self.calls.get(op, 0) + n

    def list(self, prefix):
        self._count("list")
        for i, key in enumerate(super().list(prefix)):
            if i and i % 1000 == 0:
                self._count("list")
            yield key

    def get(self, key, max_bytes=None):
        self._count("get")
        return super().get(key, max_bytes)

    def exists(self, key):
        self._count("head")
        return super().exists(key)

    def put(self, key, data, content_type="application/octet-stream", metadata=None):
        self._count("put")
        return super().put(key, data, content_type, metadata)


def finished(objects, verdicts, n: int) -> None:
    """n scans that ended long ago: intent, image and audit record in S3, nothing in flight."""
    for _ in range(n):
        msg = accepted(objects, verdicts, age_s=3600)
        v = verdicts.save_verdict(verdict_for(msg))
        objects.put(audit_key(v), v.encode().encode())


def reconciler(objects, verdicts, sent, **kw):
    from workers.runtime.reconcile import Reconciler

    return Reconciler(objects, verdicts, sent.append, interval_s=15, stale_after_s=60, days=2,
                      sweep_interval_s=kw.pop("sweep_interval_s", 3600), **kw)


@pytest.mark.parametrize("stored", [10, 1000])
def test_a_periodic_pass_lists_nothing_and_reads_only_what_is_outstanding(clean_redis, stored):
    """After the first pass (a sweep: the sweep key is new), a pass reads the stale in-flight scans
    only: no LIST, one GET (the lost scan's intent), the same requests for 10 or 1,000 stored scans."""
    objects, verdicts = CountingStore(), VerdictStore(redis_client(clean_redis), ttl_s=600)
    finished(objects, verdicts, stored)
    lost = accepted(objects, verdicts)  # in flight 120 s: its message was lost
    accepted(objects, verdicts, age_s=5)  # in flight, fresh
    sent = []
    rec = reconciler(objects, verdicts, sent)
    first, swept = rec.run_once()
    assert swept is not None and swept.intents == stored + 2 and [m.scan_id for m in sent] == [lost.scan_id]
    verdicts.r.hset(keys.scan_key(lost.scan_id), "requeued_at", "2020-01-01T00:00:00.000000Z")  # lost again
    objects.calls.clear()
    outstanding, swept = rec.run_once()
    assert swept is None  # not due: the next sweep is sweep_interval_s away
    assert outstanding.requeued == [lost.scan_id] and outstanding.outstanding == 1
    assert objects.calls == {"get": 1}, objects.calls  # the intent it re-enqueues; nothing listed


def test_the_outstanding_pass_finds_a_lost_message_without_any_listing(world):
    from workers.runtime.reconcile import reconcile_outstanding

    objects, verdicts = world
    msg = accepted(objects, verdicts)
    sent = []
    report = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60)
    assert report.requeued == [msg.scan_id] and sent == [msg]
    again = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60)
    assert again.fresh == 1 and len(sent) == 1  # requeued_at resets the clock


def test_an_in_flight_entry_whose_intent_was_withdrawn_is_dropped(world):
    """The edge answered 503 and withdrew the intent; its scan state and in-flight entry stayed."""
    from workers.runtime.reconcile import reconcile_outstanding

    objects, verdicts = world
    msg = accepted(objects, verdicts)
    objects.delete(keys.intent_s3_key(msg.tenant, msg.scan_id, msg.submitted_at))
    sent = []
    report = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60)
    assert sent == [] and report.withdrawn == 1
    assert verdicts.r.zscore(keys.in_flight_key("acme"), msg.scan_id) is None


def test_a_scan_still_waiting_behind_the_queue_head_is_not_requeued(world):
    """A backlog older than stale_after is not a lost message: a second copy only doubles the backlog
    (the chaos suite's duplicates). Queued scans are left alone while the queue's next message was
    accepted no later than they were; once the queue has moved past them, they are requeued."""
    from workers.runtime.reconcile import reconcile_outstanding

    objects, verdicts = world
    msg = accepted(objects, verdicts, age_s=120)
    submitted = clock.parse_time(msg.submitted_at)
    sent = []
    older_head = lambda: submitted - timedelta(seconds=30)  # noqa: E731 - the backlog ahead of it
    report = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60, queue_head=older_head)
    assert report.waiting == 1 and sent == []
    newer_head = lambda: submitted + timedelta(seconds=1)  # noqa: E731 - the queue is past it: it was lost
    report = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60, queue_head=newer_head)
    assert report.requeued == [msg.scan_id]
    verdicts.start_scans([msg.scan_id])  # delivered once: a processing scan is not in the queue
    verdicts.r.hdel(keys.scan_key(msg.scan_id), "requeued_at")
    report = reconcile_outstanding(objects, verdicts, sent.append, stale_after_s=60, queue_head=older_head)
    assert report.requeued == [msg.scan_id]


def test_the_sweep_restores_fresh_scans_redis_lost_so_the_outstanding_pass_can_find_them(world):
    """Right after Redis lost its data, a scan accepted a moment before is fresh: the sweep cannot
    requeue it yet, and without its in-flight entry no later pass would see it."""
    from workers.runtime.reconcile import reconcile_outstanding

    objects, verdicts = world
    msg = accepted(objects, verdicts, age_s=5, with_state=False)
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert report.fresh == 1 and report.states_restored == 1 and sent == []
    assert verdicts.r.zscore(keys.in_flight_key("acme"), msg.scan_id) is not None
    later = clock.parse_time(clock.utcnow()) + timedelta(seconds=61)
    report = reconcile_outstanding(objects, verdicts, sent.append, now=later, stale_after_s=60)
    assert report.requeued == [msg.scan_id]


def test_the_sweep_matches_intents_and_audit_records_per_tenant(world):
    """Tenants `acme` and `acme-2`: S3 lists `tenant=acme-2/` before `tenant=acme/` (- sorts before /);
    the sweep pairs each tenant's listings, whatever order tenants come in."""
    objects, verdicts = world
    done = []
    for tenant in ("acme", "acme-2", "acme.b"):
        for i in range(3):
            submitted_at = (clock.parse_time(clock.utcnow()) - timedelta(seconds=600)).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
            sid = schemas.new_scan_id()
            msg = ScanMessage(sid, tenant, "s1", "t1", keys.image_s3_key(tenant, sid, submitted_at, "JPEG"),
                              "ab" * 32, 3, submitted_at)
            objects.put(keys.intent_s3_key(tenant, sid, submitted_at), json_bytes(msg))
            verdicts.create_scan(msg)
            if i != 1:
                v = verdicts.save_verdict(verdict_for(msg))
                objects.put(audit_key(v), v.encode().encode())
                done.append(sid)
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert report.done == 6 and len(sent) == 3 and not {m.scan_id for m in sent} & set(done)


def test_the_sweep_is_due_at_start_then_every_interval_and_after_a_redis_restart(tmp_path):
    """A private redis-server, killed and started again (no persistence): a new run_id, no in-flight
    sets left, so the next pass sweeps S3 at once instead of waiting for the interval."""
    from producer.dev import services as devstack

    red = devstack.start_redis(tmp_path / "redis", tmp_path / "logs", appendonly=False)
    try:
        objects = MemoryObjectStore()
        verdicts = VerdictStore(redis_client(red.extra["url"]), ttl_s=600)
        sent = []
        rec = reconciler(objects, verdicts, sent)
        assert rec.run_once()[1] is not None and rec.run_once()[1] is None
        msg = accepted(objects, verdicts)
        red.stop()
        red = devstack.start_redis(tmp_path / "redis", tmp_path / "logs", port=red.extra["port"], appendonly=False)
        verdicts.r.connection_pool.disconnect()
        assert verdicts.get_scan(msg.scan_id) is None  # Redis lost everything
        outstanding, swept = rec.run_once()
        assert outstanding.outstanding == 0 and swept is not None and swept.requeued == [msg.scan_id]
        assert rec.run_once()[1] is None
    finally:
        red.stop()


def test_the_sweep_copes_with_a_partial_state_left_by_a_delivery_after_redis_lost_the_scan(world):
    """start_scans on a scan whose state Redis lost leaves a hash with `attempts` only."""
    objects, verdicts = world
    msg = accepted(objects, verdicts, with_state=False)
    verdicts.start_scans([msg.scan_id])
    assert set(verdicts.get_scan(msg.scan_id)) == {"attempts"}
    sent = []
    report = reconcile_once(objects, verdicts, sent.append, stale_after_s=60)
    assert report.requeued == [msg.scan_id] and report.states_restored == 1
    assert verdicts.get_scan(msg.scan_id)["tenant"] == "acme"


def test_an_unreadable_queue_holds_nothing_back():
    import redis

    from workers.runtime.reconcile import queue_head_reader

    head = queue_head_reader(redis.Redis(port=1, socket_connect_timeout=0.2))  # nothing listens on port 1
    assert head() is None


def test_the_cli_prints_its_report_alone_unless_verbose(s3_settings, clean_redis):
    import os
    import subprocess
    import sys

    from workers.core.storage import S3ObjectStore

    accepted(S3ObjectStore.from_settings(s3_settings), VerdictStore(redis_client(clean_redis), ttl_s=600),
             with_state=False)
    env = dict(os.environ, TENDERSCAN_REDIS_URL=clean_redis, TENDERSCAN_S3_ENDPOINT_URL=s3_settings.s3_endpoint_url,
               TENDERSCAN_S3_ACCESS_KEY=s3_settings.s3_access_key, TENDERSCAN_S3_SECRET_KEY=s3_settings.s3_secret_key,
               TENDERSCAN_S3_BUCKET=s3_settings.s3_bucket, TENDERSCAN_AUDIT_SIGNING_KEY="")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "producer", "reconcile", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=True)

    quiet = run("--dry-run")
    assert quiet.stdout.startswith("intents 1 ") and "would re-enqueue 1" in quiet.stdout
    assert quiet.stderr == ""  # no events, no signing warning for a run that writes nothing
    assert "reconcile_done" in run("--dry-run", "--verbose").stderr
