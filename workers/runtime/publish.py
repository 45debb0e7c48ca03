"""The last stage: verdicts to Redis (clients poll them) and to S3 (auditors query them).

Order matters. Redis first, with SET NX: the first verdict written for a scan wins and comes back
to every later writer. Then the WINNER's JSON goes to S3, so the audit record always equals what
clients read, even when two deliveries of one scan race. If the S3 write fails, the task retries;
the redelivery finds the verdict in Redis and only writes the missing audit record (`write_audit`).

    publish(verdicts, ctx, executor)   the one way verdicts are published: one script call stores
                                       them all (VerdictStore.save_verdicts), then each winner's stored
                                       bytes go to S3, AUDIT_CHUNK records per executor job
    publish_one(verdict, ctx)          the same for one verdict, in the caller's thread; raises
    queue_for_review(verdicts, ctx)    the ones a person must look at (every `review`, a QC sample of the
                                       auto-decided) into the tenant's review queue (core/review_queue.py);
                                       publish calls it once the verdicts are stored, and the pipeline
                                       for a redelivered scan's stored verdict (it is idempotent)

Beside them, one script call schedules a `scan.completed` webhook event per stored verdict for the
tenant's endpoints (workers/webhooks/events.py): it only writes to Redis, never waits on a receiver,
and a failure there is logged, never the verdict's.

The audit record's bytes are exactly the Redis JSON; its Ed25519 signature rides in the object's
metadata (workers/audit/signing.py). The signer is the caller's (the worker context's, or the one
`tenderscan reconcile` builds); without one, records are written unsigned and `tenderscan audit
verify` reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from workers.audit.signing import Signer
from workers.core import keys
from workers.core.schemas import Verdict
from workers.core.storage import ObjectStore
from workers.webhooks.events import emit_completed

if TYPE_CHECKING:
    from workers.runtime.context import WorkerContext

AUDIT_CHUNK = 4  # audit PUTs per executor job (fewer thread hops, still parallel)


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


def publish(verdicts: Sequence[Verdict], ctx: WorkerContext, executor: Executor) -> list[Verdict | BaseException]:
    """Store each verdict (or find the one stored first) and write its audit record. Returns per
    verdict its winner, or the exception that stopped it: Redis failing stops all of them, an S3
    write only the records of its chunk (their verdicts are stored; a redelivery writes the records)."""
    if not verdicts:
        return []
    try:
        saved = ctx.verdicts.save_verdicts(list(verdicts))  # [(winner, the JSON Redis holds)]
    except Exception as exc:  # noqa: BLE001 - every verdict's outcome
        return [exc] * len(verdicts)
    out: list[Verdict | BaseException] = [winner for winner, _ in saved]
    try:
        queue_for_review(out, ctx)  # type: ignore[arg-type] - every entry is a Verdict here
    except Exception as exc:  # noqa: BLE001 - stored but not queued: the redelivery queues them
        return [exc] * len(verdicts)
    jobs = [(start, executor.submit(_write_audits, saved[start:start + AUDIT_CHUNK], ctx.objects, ctx.signer))
            for start in range(0, len(saved), AUDIT_CHUNK)]
    emit_completed(ctx.webhooks, saved)  # scan.completed, while the audit PUTs run; never raises
    for start, job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - the outcome of this chunk's scans
            out[start:start + AUDIT_CHUNK] = [exc] * len(out[start:start + AUDIT_CHUNK])
    return out


def publish_one(verdict: Verdict, ctx: WorkerContext) -> Verdict:
    """publish() for one verdict in the caller's thread: the winner, or the exception raised."""
    (outcome,) = publish([verdict], ctx, ctx.executor_for(1))
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def queue_for_review(verdicts: Sequence[Verdict], ctx: WorkerContext) -> None:
    """Queue the verdicts a person must look at; raises StoreUnavailable (the delivery is retried)."""
    if ctx.reviews is not None and verdicts:
        ctx.reviews.enqueue(verdicts)


def _write_audits(saved: Sequence[tuple[Verdict, str]], objects: ObjectStore, signer: Signer | None) -> None:
    for winner, stored in saved:
        write_audit(winner, objects, signer=signer, encoded=stored)  # the bytes Redis holds
