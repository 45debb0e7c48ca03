"""VerdictStore on the real Redis (a dedicated DB, flushed per test)."""

import threading

import pytest

from producer.dev.services import free_port
from workers.core import clock, keys, schemas
from workers.core.errors import StoreUnavailable
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.verdict_store import VerdictStore, redis_client


@pytest.fixture()
def vs(clean_redis):
    return VerdictStore(redis_client(clean_redis), ttl_s=60)


def _msg():
    return ScanMessage(schemas.new_scan_id(), "acme", "s1", "t1", "scans/k.jpg", "ab" * 32, 3, clock.utcnow())


def _verdict(msg, decision):
    return Verdict(msg.scan_id, msg.tenant, msg.store_id, msg.terminal_id, decision,
                   InputRef(msg.image_key, msg.sha256, msg.bytes), Timestamps(msg.submitted_at))


def test_scan_lifecycle(vs):
    msg = _msg()
    vs.create_scan(msg)
    assert vs.get_scan(msg.scan_id)["status"] == "queued"
    assert vs.start_scans([msg.scan_id]) == [1]
    assert vs.get_scan(msg.scan_id)["status"] == "processing"
    assert vs.start_scans([msg.scan_id]) == [2]  # a redelivery counts as a second attempt
    vs.save_verdict(_verdict(msg, "genuine"))
    assert vs.get_scan(msg.scan_id)["status"] == "done"
    vs.start_scans([msg.scan_id])
    assert vs.get_scan(msg.scan_id)["status"] == "done"  # never moves back
    assert 0 < vs.r.ttl(keys.scan_key(msg.scan_id)) <= 60


def test_start_scans_marks_new_deliveries_and_returns_stored_verdicts_untouched(vs):
    fresh, again, done = _msg(), _msg(), _msg()
    for m in (fresh, again, done):
        vs.create_scan(m)
    vs.start_scans([again.scan_id])  # an earlier delivery died
    verdict = vs.save_verdict(_verdict(done, "genuine"))
    assert vs.start_scans([fresh.scan_id, again.scan_id, done.scan_id]) == [1, 2, verdict]
    assert vs.get_scan(fresh.scan_id)["status"] == vs.get_scan(again.scan_id)["status"] == "processing"
    assert vs.get_scan(done.scan_id)["status"] == "done" and vs.get_scan(done.scan_id)["attempts"] == "0"
    assert vs.start_scans([]) == []


def test_save_verdicts_keeps_the_first_verdict_of_each_scan_and_cleans_in_flight(vs):
    a, b = _msg(), _msg()
    for m in (a, b):
        vs.create_scan(m)
    first_b = vs.save_verdict(_verdict(b, "counterfeit"))
    saved = vs.save_verdicts([_verdict(a, "genuine"), _verdict(b, "genuine")])
    assert [w.decision for w, _ in saved] == ["genuine", "counterfeit"]  # b's first verdict stands
    assert saved[1] == (first_b, first_b.encode()) and saved[0][1] == _verdict(a, "genuine").encode()
    assert vs.get_verdict(a.scan_id) == saved[0][0]
    assert {vs.get_scan(m.scan_id)["status"] for m in (a, b)} == {"done"}
    assert vs.r.zcard(keys.in_flight_key("acme")) == 0


def test_an_outage_refunds_the_attempt_and_records_when_outages_began(vs):
    msg = _msg()
    vs.create_scan(msg)
    assert vs.start_scans([msg.scan_id]) == [1]
    assert vs.refund_attempt(msg.scan_id, "2026-01-01T00:00:00.000000Z") is True
    assert vs.start_scans([msg.scan_id]) == [1]  # the outage's delivery did not count
    assert vs.refund_attempts([msg.scan_id], "2026-01-01T00:05:00.000000Z") == [True]
    state = vs.get_scan(msg.scan_id)
    assert state["attempts"] == "0" and state["transient_failures"] == "2"
    assert state["transient_since"] == "2026-01-01T00:00:00.000000Z"  # the first outage
    assert state["transient_at"] == "2026-01-01T00:05:00.000000Z"  # the last one
    vs.refund_attempt(msg.scan_id, "2026-01-01T00:06:00.000000Z")
    assert vs.get_scan(msg.scan_id)["attempts"] == "0"  # never below zero
    lost = _msg()  # Redis lost this scan's state: nothing is created (it would have no TTL)
    assert vs.refund_attempts([lost.scan_id, msg.scan_id], clock.utcnow()) == [False, True]
    assert vs.get_scan(lost.scan_id) is None
    assert vs.get_scans([msg.scan_id, lost.scan_id])[1] is None


def test_first_verdict_wins_even_under_a_race(vs):
    msg = _msg()
    vs.create_scan(msg)
    results = []
    threads = [threading.Thread(target=lambda d=d: results.append(vs.save_verdict(_verdict(msg, d))))
               for d in ["genuine", "counterfeit"] * 10]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.decision for r in results}) == 1
    assert vs.get_verdict(msg.scan_id).decision == results[0].decision


def test_save_verdict_publishes_done(vs):
    msg = _msg()
    vs.create_scan(msg)
    pubsub = vs.r.pubsub()
    pubsub.subscribe(keys.done_channel(msg.scan_id))
    pubsub.get_message(timeout=1)  # subscribe confirmation
    vs.save_verdict(_verdict(msg, "review"))
    message = pubsub.get_message(timeout=2)
    assert message and message["channel"] == keys.done_channel(msg.scan_id)


def test_idempotency_claims(vs):
    now = clock.utcnow()
    assert vs.claim_idempotency("acme", "k1", "s" * 32, "h1", now, 60) is None
    assert vs.claim_idempotency("acme", "k1", "t" * 32, "h2", now, 60) == ("s" * 32, "h1", now)
    assert vs.claim_idempotency("globex", "k1", "u" * 32, "h3", now, 60) is None  # keys are per tenant
    vs.release_idempotency("acme", "k1", "t" * 32)  # not that scan's claim: kept
    assert vs.claim_idempotency("acme", "k1", "v" * 32, "h4", now, 60) == ("s" * 32, "h1", now)
    vs.release_idempotency("acme", "k1", "s" * 32)
    assert vs.claim_idempotency("acme", "k1", "v" * 32, "h4", now, 60) is None


def test_unreachable_redis_is_transient():
    vs = VerdictStore(redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5))
    with pytest.raises(StoreUnavailable):
        vs.get_scan("a" * 32)
