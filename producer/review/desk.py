"""The review desk: plain functions behind the console's routes (producer/review/routes.py).

    queue(desk, reviewer)            the scans awaiting review in the reviewer's tenants, oldest first,
                                     with their age against the SLA and who holds each: the oldest
                                     QUEUE_PAGE of them; queue_depth says how many wait in all
    open_scan(desk, reviewer, id)    claim the scan (a lease) and return what the reviewer judges on:
                                     the verdict (decision, confidence, per-sign scores), the image's key
    record(desk, reviewer, id, ...)  the review: stored once in Redis (only by the claim's holder), its
                                     signed record written to S3, then `on_review_recorded` (the hook)
    release(desk, reviewer, id)      give the lease back (only the holder's is dropped)
    undo(desk, reviewer, id)         within keys.REVIEW_UNDO_S, by the same reviewer: Redis and S3 back
                                     to before, the scan queued again and still claimed by them
    canonical_png(image bytes)       the model's canonical view of the note (models/canonical.py: the
                                     locator and warp the worker's preprocessing uses), as a PNG

Errors: ApiError 404 for a scan outside the reviewer's tenants or not awaiting review (the same answer),
409 for a scan another reviewer holds or one already reviewed; S3 and Redis outages stay
TransientError (503 at the edge).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

from producer.errors import ApiError, bad_request, not_found
from producer.review.access import Reviewer
from workers.audit.reviews import withdraw_review, write_review
from workers.audit.signing import Signer, sha256_hex
from workers.core import clock, keys
from workers.core.enums import ReviewLabel, ReviewSource
from workers.core.errors import ContractError, ObjectNotFound
from workers.core.logging import get_logger
from workers.core.review_queue import Pending, ReviewQueue
from workers.core.schemas import MAX_REVIEW_NOTE, Review, Verdict, is_scan_id
from workers.core.storage import ObjectStore
from workers.core.telemetry import ReviewMetrics
from workers.core.verdict_store import VerdictStore
from workers.webhooks.events import emit_reviewed

log = get_logger("producer.review")
CANONICAL_SIZE = (256, 576)  # (height, width) of the canonical view shown: the note's 9:4, 2x the model's


@dataclass(frozen=True)
class Desk:
    """What the review routes work with; one per API process (app.state.review_desk)."""

    queue: ReviewQueue
    verdicts: VerdictStore
    objects: ObjectStore
    signer: Signer | None
    sla_s: int
    metrics: ReviewMetrics | None = None  # the API registry's review counters (docs/REVIEW.md, Metrics)


def on_review_recorded(desk: Desk, review: Review) -> None:
    """Called once per review, after its signed record is in S3 and before the reviewer is answered:
    logs `scan_reviewed` and queues the tenant's `scan.reviewed` webhook (workers.webhooks.events;
    `emit_reviewed` never raises, so nothing here fails the reviewer's request). An undo within
    keys.REVIEW_UNDO_S can follow; the review made again after it has another `reviewed_at`, hence
    another event id."""
    log.info("scan_reviewed", scan_id=review.scan_id, tenant=review.tenant, label=review.label,
             reviewer=review.reviewer, model_decision=review.model_decision)
    emit_reviewed(desk.queue.r, review.tenant, review.scan_id, review.reviewed_at, review_json(review))


QUEUE_PAGE = 200  # the console shows the oldest this many; `total` says how many wait in all


def queue(desk: Desk, reviewer: Reviewer, limit: int = QUEUE_PAGE, now: float | None = None) -> list[dict]:
    tenants = desk.queue.tenants() if reviewer.auditor else [reviewer.scope]
    now = datetime.now(UTC).timestamp() if now is None else now
    return [_item(p, now, desk.sla_s) for p in desk.queue.pending(tenants, limit)]


def queue_depth(desk: Desk, reviewer: Reviewer) -> int:
    return desk.queue.depth(desk.queue.tenants() if reviewer.auditor else [reviewer.scope])


def _item(p: Pending, now: float, sla_s: int) -> dict:
    age = max(0.0, now - p.submitted_unix)
    return {"scan_id": p.scan_id, "tenant": p.tenant, "age_s": round(age, 1), "sla_s": sla_s,
            "overdue": age > sla_s, "claimed_by": p.claimed_by, "why": p.source,
            "submitted_at": clock.format_time(datetime.fromtimestamp(p.submitted_unix, UTC))}


def locate(desk: Desk, reviewer: Reviewer, scan_id: str) -> tuple[str, float]:
    """(tenant, submission unix s) of a queued scan the reviewer may see, else 404."""
    if not is_scan_id(scan_id):
        raise not_found()
    tenants = desk.queue.tenants() if reviewer.auditor else [reviewer.scope]
    for tenant in tenants:
        at = desk.queue.queued_at(tenant, scan_id)
        if at is not None:
            return tenant, at
    raise not_found()


def load_verdict(desk: Desk, tenant: str, scan_id: str, submitted_unix: float) -> tuple[Verdict, str]:
    """The verdict from its audit record (what auditors see), and the sha256 of those bytes."""
    submitted = clock.format_time(datetime.fromtimestamp(submitted_unix, UTC))
    try:
        data = desk.objects.get(keys.verdict_s3_key(tenant, scan_id, submitted)).data
    except ObjectNotFound:  # queued a moment before its audit record landed: Redis has the same bytes
        verdict = desk.verdicts.get_verdict(scan_id)
        if verdict is None:
            raise not_found() from None
        data = verdict.encode().encode()
    verdict = Verdict.decode(data)
    if verdict.tenant != tenant:
        raise not_found()
    return verdict, sha256_hex(data)


def open_scan(desk: Desk, reviewer: Reviewer, scan_id: str) -> dict:
    tenant, at = locate(desk, reviewer, scan_id)
    holder = desk.queue.claim(scan_id, reviewer.id)
    if holder != reviewer.id:
        raise ApiError(409, "claimed", f"{holder} is reviewing this scan")
    verdict, _ = load_verdict(desk, tenant, scan_id, at)
    return {"scan_id": scan_id, "tenant": tenant, "submitted_at": verdict.timestamps.submitted,
            "decision": verdict.decision, "reason": verdict.reason, "confidence": verdict.confidence,
            "p_counterfeit": verdict.p_counterfeit, "signs": verdict.signs, "signs_detected": verdict.signs_detected,
            "denomination": verdict.denomination, "model": verdict.model.version if verdict.model else None,
            "source": _source(verdict), "claim_ttl_s": desk.queue.claim_ttl_s,
            "image_url": f"/review/api/scans/{scan_id}/image", "canonical_url": f"/review/api/scans/{scan_id}/canonical"}


def _source(verdict: Verdict) -> str:
    return (ReviewSource.REVIEW if verdict.decision == "review" else ReviewSource.QC_SAMPLE).value


def release(desk: Desk, reviewer: Reviewer, scan_id: str) -> dict:
    """Give the lease back without a review. 404 like every other route for a scan outside the
    reviewer's tenants (or no longer queued), so the answer tells nothing about other tenants."""
    locate(desk, reviewer, scan_id)
    desk.queue.release(scan_id, reviewer.id)
    return {"scan_id": scan_id, "released": True}


def image_of(desk: Desk, reviewer: Reviewer, scan_id: str) -> tuple[bytes, str]:
    """(bytes, content type) of the image of a queued scan the reviewer may see."""
    tenant, at = locate(desk, reviewer, scan_id)
    verdict, _ = load_verdict(desk, tenant, scan_id, at)
    obj = desk.objects.get(verdict.input.key)
    return obj.data, "image/png" if verdict.input.key.endswith(".png") else "image/jpeg"


def canonical_png(data: bytes) -> bytes:
    """The note as the model sees it before normalisation: found, straightened, balanced, flattened."""
    # numpy, Pillow, scipy and no torch (tests/test_producer_imports.py); scipy is the model extra's
    from PIL import Image

    from models.canonical import canonical_view

    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (CANONICAL_SIZE[1] * 2, CANONICAL_SIZE[0] * 2))  # JPEG: decode near the size needed
    pixels, _ = canonical_view(image.convert("RGB"), *CANONICAL_SIZE)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def record(desk: Desk, reviewer: Reviewer, scan_id: str, body: dict, now: datetime | None = None) -> dict:
    label, signs, note = body.get("label"), body.get("signs_seen", []), body.get("note", "")
    if label not in set(ReviewLabel):
        raise bad_request(f"label must be one of {', '.join(ReviewLabel)}")
    if not isinstance(note, str) or len(note) > MAX_REVIEW_NOTE:
        raise bad_request(f"note: text of at most {MAX_REVIEW_NOTE} characters")
    tenant, at = locate(desk, reviewer, scan_id)
    verdict, verdict_sha = load_verdict(desk, tenant, scan_id, at)
    if not isinstance(signs, list) or any(s not in verdict.signs for s in signs):
        raise bad_request(f"signs_seen: a list of the model's sign names ({', '.join(verdict.signs) or 'none'})")
    review = Review(
        scan_id=scan_id, tenant=tenant, label=label, reviewer=reviewer.id,
        reviewed_at=clock.format_time(now or datetime.now(UTC)), submitted_at=verdict.timestamps.submitted,
        image_key=verdict.input.key, source=_source(verdict), model_decision=verdict.decision,
        model_confidence=verdict.confidence, model_p_counterfeit=verdict.p_counterfeit,
        model_version=verdict.model.version if verdict.model else None, model_denomination=verdict.denomination,
        verdict_sha256=verdict_sha,
        signs_seen=sorted(set(signs)), note=note.strip())
    try:
        review.check()
    except ContractError as exc:
        raise bad_request(exc.detail) from None
    stored = desk.queue.record(review)
    if stored == 0:
        raise ApiError(409, "claim_lost", "your claim on this scan lapsed or another reviewer holds it: reopen it")
    if stored < 0:
        raise ApiError(409, "already_reviewed", "this scan was reviewed already")
    try:
        key = write_review(review, desk.objects, desk.signer)
    except Exception:
        desk.queue.forget_review(review)  # no record, no review: the scan is back in the queue
        raise
    on_review_recorded(desk, review)
    if desk.metrics is not None:
        desk.metrics.observe_review(review.reviewer, review.model_decision, review.label, list(verdict.signs),
                                    verdict.signs_detected, review.signs_seen)
    return {"review": review_json(review), "record": key, "undo_s": keys.REVIEW_UNDO_S}


def review_json(review: Review) -> dict:
    return {"scan_id": review.scan_id, "tenant": review.tenant, "label": review.label,
            "decision": review.final_decision, "reviewer": review.reviewer, "reviewed_at": review.reviewed_at,
            "signs_seen": review.signs_seen, "note": review.note}


def undo(desk: Desk, reviewer: Reviewer, scan_id: str, now: datetime | None = None) -> dict:
    if not is_scan_id(scan_id):
        raise not_found()
    review = desk.queue.get_review(scan_id)
    if review is None or not reviewer.may_see(review.tenant):
        raise not_found()
    if review.reviewer != reviewer.id:
        raise ApiError(409, "not_yours", "only the reviewer who recorded a review can take it back")
    age = ((now or datetime.now(UTC)) - clock.parse_time(review.reviewed_at)).total_seconds()
    if age > keys.REVIEW_UNDO_S:
        raise ApiError(409, "undo_expired", f"a review can be taken back within {keys.REVIEW_UNDO_S} s")
    if not desk.queue.undo(review, clock.parse_time(review.submitted_at).timestamp()):
        raise ApiError(409, "already_undone", "this review was taken back already")
    withdraw_review(review, desk.objects)
    if desk.metrics is not None:
        desk.metrics.observe_undo(reviewer.id)
    log.info("review_undone", scan_id=scan_id, tenant=review.tenant, reviewer=reviewer.id)
    return {"scan_id": scan_id, "undone": True}
