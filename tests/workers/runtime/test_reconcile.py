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
