"""ReviewQueue on the real Redis: what is queued, in which order, claims, one review per scan, undo."""

from __future__ import annotations

import pytest

from workers.core import keys
from workers.core.review_queue import ReviewQueue, qc_pick, source_of
from workers.core.schemas import InputRef, Review, Timestamps, Verdict, new_scan_id
from workers.core.verdict_store import redis_client


@pytest.fixture()
def rq(clean_redis):
    return ReviewQueue(redis_client(clean_redis), qc_rate=0.0, claim_ttl_s=30, review_ttl_s=600)


def verdict(decision="review", tenant="acme", minute=0, scan_id=None) -> Verdict:
    sid = scan_id or new_scan_id()
    return Verdict(sid, tenant, "s1", "t1", decision, InputRef(f"scans/dt=2026-03-01/tenant={tenant}/{sid}.jpg",
                                                               "ab" * 32, 10),
                   Timestamps(f"2026-03-01T10:{minute:02d}:00.000000Z"), confidence=0.6, p_counterfeit=0.4,
                   signs={"microprint_blur": 0.7})


def review_of(v: Verdict, who="ann@acme", at="2026-03-02T09:00:00.000000Z") -> Review:
    return Review(scan_id=v.scan_id, tenant=v.tenant, label="genuine", reviewer=who, reviewed_at=at,
                  submitted_at=v.timestamps.submitted, image_key=v.input.key, source="review",
                  model_decision=v.decision)


def test_every_review_verdict_is_queued_oldest_first_and_auto_decided_ones_only_when_sampled(rq):
    late, early = verdict(minute=30), verdict(minute=5)
    auto = verdict("genuine")
    assert rq.enqueue([late, early, auto, verdict("rejected")]) == 2
    assert [p.scan_id for p in rq.pending(["acme"])] == [early.scan_id, late.scan_id]
    assert rq.pending(["acme"])[0].source is None  # the verdict is not in Redis (here: never was)
    rq.r.set(keys.verdict_key(early.scan_id), early.encode())
    assert rq.pending(["acme"])[0].source == "review"
    assert rq.tenants() == ["acme"]


def test_the_qc_sample_is_deterministic_and_near_its_rate():
    ids = [new_scan_id() for _ in range(4000)]
    drawn = [i for i in ids if qc_pick(i, 0.1)]
    assert 300 < len(drawn) < 500
    assert drawn == [i for i in ids if qc_pick(i, 0.1)]  # a redelivery draws the same
    assert not any(qc_pick(i, 0.0) for i in ids) and all(qc_pick(i, 1.0) for i in ids)
    sampled = next(i for i in ids if qc_pick(i, 0.1))
    assert source_of(verdict("counterfeit", scan_id=sampled), 0.1) == "qc_sample"
    assert source_of(verdict("rejected", scan_id=sampled), 0.1) is None  # only genuine/counterfeit are sampled


def test_a_reviewer_must_hold_the_claim_and_a_scan_is_reviewed_once(rq):
    v = verdict()
    rq.enqueue([v])
    assert rq.claim(v.scan_id, "ann@acme") == "ann@acme"
    assert rq.claim(v.scan_id, "bob@acme") == "ann@acme"  # two reviewers never judge one scan at once
    assert rq.pending(["acme"])[0].claimed_by == "ann@acme"
    assert rq.record(review_of(v, "bob@acme")) == 0
    assert rq.record(review_of(v)) == 1
    assert rq.pending(["acme"]) == [] and rq.r.get(keys.review_claim_key(v.scan_id)) is None
    assert rq.get_review(v.scan_id) == review_of(v)
    rq.claim(v.scan_id, "ann@acme")
    assert rq.record(review_of(v)) == -1
    rq.enqueue([v])  # a redelivery republishing the verdict does not queue a reviewed scan again
    assert rq.pending(["acme"]) == []


def test_undo_puts_the_scan_back_claimed_by_its_reviewer(rq):
    v = verdict()
    rq.enqueue([v])
    rq.claim(v.scan_id, "ann@acme")
    review = review_of(v)
    rq.record(review)
    assert rq.undo(review, 1772359200.0)
    assert rq.get_review(v.scan_id) is None
    assert [(p.scan_id, p.claimed_by) for p in rq.pending(["acme"])] == [(v.scan_id, "ann@acme")]
    assert not rq.undo(review, 1772359200.0)  # once


def test_tenants_queues_are_apart(rq):
    a, b = verdict(tenant="acme"), verdict(tenant="globex")
    rq.enqueue([a, b])
    assert [p.scan_id for p in rq.pending(["acme"])] == [a.scan_id]
    assert {p.scan_id for p in rq.pending(rq.tenants())} == {a.scan_id, b.scan_id}
    assert rq.queued_at("globex", a.scan_id) is None


def test_a_lapsed_claim_records_nothing_and_another_reviewer_may_take_the_scan(clean_redis):
    import time

    rq = ReviewQueue(redis_client(clean_redis), claim_ttl_s=1)
    v = verdict()
    rq.enqueue([v])
    rq.claim(v.scan_id, "ann@acme")
    time.sleep(1.2)
    assert rq.record(review_of(v)) == 0
    assert rq.claim(v.scan_id, "bob@acme") == "bob@acme"


def test_forget_review_puts_the_scan_back_unclaimed(rq):
    v = verdict()
    rq.enqueue([v])
    rq.claim(v.scan_id, "ann@acme")
    rq.record(review_of(v))
    rq.forget_review(review_of(v))
    assert rq.get_review(v.scan_id) is None
    assert [(p.scan_id, p.claimed_by) for p in rq.pending(["acme"])] == [(v.scan_id, None)]


def test_the_console_gets_a_page_of_the_oldest_and_depth_counts_them_all(rq):
    queued = [verdict(minute=i % 60, scan_id=f"{i:032x}") for i in range(250)]
    queued += [verdict(tenant="globex", minute=0)]
    assert rq.enqueue(queued) == 251
    page = rq.pending(["acme"], limit=200)
    oldest = sorted(queued[:250], key=lambda v: (v.timestamps.submitted, v.scan_id))[:200]
    assert [p.scan_id for p in page] == [v.scan_id for v in oldest]
    assert rq.depth(["acme"]) == 250 and rq.depth(["acme", "globex"]) == 251 and rq.depth([]) == 0
