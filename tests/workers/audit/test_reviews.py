"""workers/audit/reviews.py: a review record is signed like an audit record, and the day manifest of
the review's date covers it beside the verdicts."""

from __future__ import annotations

from tests.workers.audit.records import SIGNER, VERIFIER, kinds, verdict, world
from workers.audit import manifests, signing
from workers.audit.reviews import read_reviews, review_key, withdraw_review, write_review
from workers.core.schemas import Review


def review_of(v, at="2026-03-02T09:00:00.000000Z") -> Review:
    return Review(scan_id=v.scan_id, tenant=v.tenant, label="counterfeit", reviewer="ann@acme", reviewed_at=at,
                  submitted_at=v.timestamps.submitted, image_key=v.input.key, source="review",
                  model_decision=v.decision, signs_seen=["microprint_blur"], note="blurred microprint")


def test_the_record_lands_under_the_review_date_and_verifies_with_the_audit_key():
    objects, vs = world(1)
    review = review_of(vs[0])
    key = write_review(review, objects, SIGNER)
    assert key == f"reviews/dt=2026-03-02/tenant=acme/{vs[0].scan_id}.json" == review_key(review)
    obj = objects.get(key)
    assert Review.decode(obj.data) == review and obj.data == review.encode().encode()
    assert manifests.check_record(VERIFIER, key, obj.data, obj.metadata) is None
    assert [r for _, r in read_reviews(objects, "2026-03-01", "2026-03-03")] == [review]


def test_the_days_manifest_covers_reviews_and_names_one_changed_after_sealing():
    objects, vs = world(2, day="2026-03-02")
    old = verdict("2026-03-01")
    reviews = [review_of(vs[0]), review_of(old)]  # today's scan, and yesterday's reviewed today
    for r in reviews:
        write_review(r, objects, SIGNER)
    assert manifests.tenants_of_day(objects, "2026-03-02") == ["acme"]
    doc = manifests.seal_day(objects, SIGNER, "2026-03-02", "acme")
    assert doc["count"] == 4
    assert {e["scan_id"] for e in doc["entries"]} >= {f"review:{vs[0].scan_id}", f"review:{old.scan_id}"}
    assert manifests.verify_range(objects, VERIFIER, "acme", "2026-03-02", "2026-03-02").ok
    forged = review_of(old).__class__(**{**review_of(old).__dict__, "label": "genuine"})
    obj = objects.get(review_key(forged))
    objects.put(review_key(forged), forged.encode().encode(), metadata=obj.metadata)
    withdraw_review(reviews[0], objects)
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-02", "2026-03-02")
    assert kinds(rep) == sorted([("altered", f"review:{old.scan_id}"), ("bad_signature", f"review:{old.scan_id}"),
                                 ("missing", f"review:{vs[0].scan_id}")])


def test_an_unsigned_review_is_flagged():
    objects, vs = world(1)
    write_review(review_of(vs[0]), objects, None)
    manifests.seal_day(objects, SIGNER, "2026-03-02", "acme")
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-03-02", "2026-03-02")
    assert kinds(rep) == [("unsigned", f"review:{vs[0].scan_id}")]
    assert signing.sha256_hex(b"") and rep.records == 1


def test_a_review_key_counts_on_review_records_only():
    """The API holds the review key: it must not be able to sign a verdict record that verifies."""
    review_signer = signing.Signer("44" * 32)
    verifier = signing.Verifier([SIGNER.public_hex], [review_signer.public_hex])
    objects, vs = world(1, signer=review_signer)  # a verdict record signed with the review key
    write_review(review_of(vs[0]), objects, review_signer)
    manifests.seal_day(objects, SIGNER, "2026-03-01", "acme")
    manifests.seal_day(objects, SIGNER, "2026-03-02", "acme")
    rep = manifests.verify_range(objects, verifier, "acme", "2026-03-01", "2026-03-02")
    assert kinds(rep) == [("bad_signature", vs[0].scan_id)]  # the review verifies, the forged verdict does not
