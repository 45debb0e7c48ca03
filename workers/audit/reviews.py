"""A person's review as an S3 record beside the verdict's: signed the way audit records are.

    write_review(review, objects, signer)    reviews/dt=R/tenant=T/{scan_id}.json = Review.encode(), its
                                             Ed25519 signature in the metadata (signing.record_metadata:
                                             the key is bound, so a copy elsewhere no longer verifies)
    withdraw_review(review, objects)         an undo within keys.REVIEW_UNDO_S removes the record (a
                                             versioned, Object-Locked bucket keeps the old version under
                                             a delete marker: the undo itself stays visible to an auditor)
    read_reviews(objects, start, end, ...)   every review record of the days
    dataset_line(review, file)               one manifest.jsonl line of `tenderscan dataset from-reviews`
                                             (producer/cli/commands/dataset.py writes the folder): the
                                             layout of `tenderscan dataset generate`, with the human
                                             label, the reviewer and the model's own answer

The verdict's audit record is never touched: the review is a second record, and the day manifest of
the review's date covers it (workers/audit/manifests.py, entry `review:{scan_id}`).
"""

from __future__ import annotations

from collections.abc import Iterator

from workers.audit.manifests import days, fetch
from workers.audit.signing import Signer
from workers.core import keys
from workers.core.enums import ReviewLabel
from workers.core.schemas import Review
from workers.core.storage import ObjectStore


def review_key(review: Review) -> str:
    return keys.review_s3_key(review.tenant, review.scan_id, review.reviewed_at)


def write_review(review: Review, objects: ObjectStore, signer: Signer | None) -> str:
    """PUT the signed record; returns its key. Unsigned without a signer (`audit verify` flags it)."""
    key = review_key(review)
    data = review.encode().encode()
    metadata = signer.record_metadata(key, data) if signer else None
    objects.put(key, data, content_type="application/json", metadata=metadata)
    return key


def withdraw_review(review: Review, objects: ObjectStore) -> None:
    objects.delete(review_key(review))


def read_reviews(objects: ObjectStore, start: str, end: str, tenant: str | None = None) -> Iterator[tuple[str, Review]]:
    """(key, review) for every review record of the days start..end (YYYY-MM-DD), oldest day first."""
    for day in days(start, end):
        day_keys = [k for k in objects.list(keys.reviews_day_prefix(day, tenant)) if k.endswith(".json")]
        for key, data, _ in fetch(objects, day_keys):
            if data is not None:
                yield key, Review.decode(data)


# --- reviewed labels back into training (`tenderscan dataset from-reviews`) ---------------------
def dataset_line(review: Review, file: str) -> dict | None:
    """One manifest.jsonl line in the layout `tenderscan dataset generate` writes (models/data.py reads
    `file`, `kind`, `counterfeit`, `signs`, `denomination`), plus who labelled it and what the model
    answered. None for a note whose denomination nobody knows (the model read none): the training loss
    needs one for every note."""
    note = review.label != ReviewLabel.NOT_A_BANKNOTE
    if note and not review.model_denomination:
        return None
    return {"file": file, "kind": "note" if note else "not_a_banknote", "label": review.label,
            "counterfeit": review.label == ReviewLabel.COUNTERFEIT, "signs": list(review.signs_seen) if note else [],
            "denomination": review.model_denomination if note else None, "source": "review",
            "scan_id": review.scan_id, "tenant": review.tenant, "reviewer": review.reviewer,
            "reviewed_at": review.reviewed_at, "review_source": review.source,
            "model": {"decision": review.model_decision, "confidence": review.model_confidence,
                      "p_counterfeit": review.model_p_counterfeit, "version": review.model_version}}

