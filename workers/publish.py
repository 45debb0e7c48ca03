"""The last stage: one verdict to Redis (clients poll it) and to S3 (auditors query it).

Order matters. Redis first, with SET NX: the first verdict written for a scan wins and comes back
to every later writer. Then the WINNER's JSON goes to S3, so the audit record always equals what
clients read, even when two deliveries of one scan race. If the S3 write fails, the task retries;
the redelivery finds the verdict in Redis and only writes the missing audit record (`write_audit`).
"""

from __future__ import annotations

from workers import contract
from workers.contract import Verdict
from workers.storage import ObjectStore
from workers.verdict_store import VerdictStore


def audit_key(verdict: Verdict) -> str:
    return contract.verdict_s3_key(verdict.tenant, verdict.scan_id, verdict.timestamps.submitted)


def write_audit(verdict: Verdict, object_store: ObjectStore, only_if_missing: bool = False) -> None:
    key = audit_key(verdict)
    if only_if_missing and object_store.exists(key):
        return
    object_store.put(key, verdict.encode().encode(), content_type="application/json")


def publish(verdict: Verdict, verdict_store: VerdictStore, object_store: ObjectStore) -> Verdict:
    """Store the verdict (or find the one already stored) and write its audit record. Returns the winner."""
    winner = verdict_store.save_verdict(verdict)
    write_audit(winner, object_store)
    return winner
