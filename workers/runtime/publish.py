"""The last stage: one verdict to Redis (clients poll it) and to S3 (auditors query it).

Order matters. Redis first, with SET NX: the first verdict written for a scan wins and comes back
to every later writer. Then the WINNER's JSON goes to S3, so the audit record always equals what
clients read, even when two deliveries of one scan race. If the S3 write fails, the task retries;
the redelivery finds the verdict in Redis and only writes the missing audit record (`write_audit`).

The audit record's bytes are exactly the Redis JSON; its Ed25519 signature rides in the object's
metadata (workers/audit/signing.py). The signer comes from the caller (the worker context's, or the
one `tenderscan reconcile` builds); without one, records are written unsigned and `tenderscan audit
verify` reports them.
"""

from __future__ import annotations

from workers.audit.signing import Signer
from workers.core import keys
from workers.core.schemas import Verdict
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore


def audit_key(verdict: Verdict) -> str:
    return keys.verdict_s3_key(verdict.tenant, verdict.scan_id, verdict.timestamps.submitted)


def write_audit(verdict: Verdict, object_store: ObjectStore, only_if_missing: bool = False,
                signer: Signer | None = None, encoded: str | None = None) -> None:
    """`encoded`: the verdict's JSON when the caller already holds it (the string Redis stored)."""
    key = audit_key(verdict)
    if only_if_missing and object_store.exists(key):
        return
    data = (encoded or verdict.encode()).encode()
    metadata = signer.record_metadata(key, data) if signer else None
    object_store.put(key, data, content_type="application/json", metadata=metadata)


def publish(verdict: Verdict, verdict_store: VerdictStore, object_store: ObjectStore,
            signer: Signer | None = None) -> Verdict:
    """Store the verdict (or find the one already stored) and write its audit record. Returns the winner."""
    winner = verdict_store.save_verdict(verdict)
    write_audit(winner, object_store, signer=signer)
    return winner
