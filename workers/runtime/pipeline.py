"""One scan, from its queue message to its published verdict. Plain functions; the Celery task calls them.

    process_scans(msgs, ctx, executor)   a multi-scan message: process_scan for each, concurrently,
                                          one outcome per scan; returns when all have finished
    process_scan(msg, ctx)
      verdict already stored?  -> redelivery: make sure the S3 audit record exists, return it
      start_scans              -> attempt number; past max_attempts the scan is poison: an `error`
                                  verdict (internal_error), no further work
      past its deadline?       -> `expired` (deadline_exceeded), no inference
      S3 get (max_bytes)       -> image_missing / image_too_large
      length == message's?     -> size_mismatch
      sha256 == message's?     -> checksum_mismatch
      direct upload: magic     -> type_mismatch (bytes vs the stored Content-Type), unsupported_format
      imaging.decode           -> the RejectedScan's reason (empty, format, unreadable, bomb, size)
      preprocess, runner.infer -> waits for this scan's batch (other task threads fill it)
      decide, publish          -> Redis SET NX first, then the winner to S3

Every bad input ends in its own `rejected` verdict; TransientError (Redis, S3, a stuck runner)
propagates so the task retries. A delivery that ends in an outage (S3 or Redis: errors.is_outage)
gives back the attempt start_scans counted, best effort (`_refund`): the poison cap counts
deliveries that crashed, hung or failed for a reason of the scan's own, never outages; the task
bounds outages by time instead (workers/runtime/retrying.py). Nothing here knows about Celery.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from workers.core import imaging, telemetry
from workers.core.clock import format_time, parse_time
from workers.core.enums import Decision, Reason
from workers.core.errors import ObjectNotFound, RejectedScan, TransientError, is_outage
from workers.core.keys import CONTENT_TYPES, is_upload_key
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.storage import ObjectStore, StoredObject, TooLarge
from workers.runtime import decide
from workers.runtime.publish import publish, write_audit

if TYPE_CHECKING:
    from workers.runtime.context import WorkerContext

log = structlog.get_logger("workers.runtime.pipeline")

@dataclass
class _Stages:
    """Per-stage milliseconds for the scan_done event (metrics later read the same names)."""

    ms: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.ms[name + "_ms"] = round((now - self._t) * 1000, 2)
        self._t = now


def _input_ref(msg: ScanMessage, info: imaging.ImageInfo | None = None) -> InputRef:
    return InputRef(key=msg.image_key, sha256=msg.sha256, bytes=msg.bytes,
                    width=info.width if info else None, height=info.height if info else None)


def unjudged_verdict(msg: ScanMessage, decision: Decision, reason: str, detail: str, attempt: int,
                     dequeued: str | None, completed: str, info: imaging.ImageInfo | None = None) -> Verdict:
    """A rejected, expired or error verdict: no inference, so no probabilities and no model."""
    return Verdict(scan_id=msg.scan_id, tenant=msg.tenant, store_id=msg.store_id, terminal_id=msg.terminal_id,
                   decision=decision.value, input=_input_ref(msg, info),
                   timestamps=Timestamps(submitted=msg.submitted_at, dequeued=dequeued, completed=completed),
                   reason=str(reason), detail=detail or None, attempt=attempt)


def _fetch_decode(msg: ScanMessage, ctx: WorkerContext, stages: _Stages):
    """S3 -> checked bytes -> RGB image -> model input. Raises RejectedScan for every bad input."""
    try:
        obj = ctx.objects.get(msg.image_key, max_bytes=ctx.limits.max_bytes)
    except TooLarge as exc:
        raise RejectedScan(Reason.IMAGE_TOO_LARGE, f"{exc.size} bytes > limit {ctx.limits.max_bytes}") from None
    except ObjectNotFound:
        raise RejectedScan(Reason.IMAGE_MISSING, "no object at the scan's image key") from None
    stages.lap("fetch")
    _check_arrived(msg, obj)
    image, info = imaging.decode(obj.data, ctx.limits)
    x = ctx.runner.preprocess(image)
    stages.lap("decode")
    return x, info


def _check_arrived(msg: ScanMessage, obj: StoredObject) -> None:
    """What is in S3 is what was accepted: length, checksum, and for a direct upload (which the edge
    never saw) the magic bytes against the Content-Type the presigned POST pinned."""
    if len(obj.data) != msg.bytes:
        raise RejectedScan(Reason.SIZE_MISMATCH, f"stored {len(obj.data)} bytes, accepted {msg.bytes}")
    if hashlib.sha256(obj.data).hexdigest() != msg.sha256:
        raise RejectedScan(Reason.CHECKSUM_MISMATCH, "stored bytes differ from the bytes accepted")
    if is_upload_key(msg.image_key):
        fmt = imaging.sniff(obj.data)
        if fmt is None:
            raise RejectedScan(Reason.UNSUPPORTED_FORMAT, "the direct upload is not a JPEG or PNG image")
        if CONTENT_TYPES[fmt] != obj.content_type:
            raise RejectedScan(Reason.TYPE_MISMATCH, f"a {fmt} stored as {obj.content_type!r}")


def process_scan(msg: ScanMessage, ctx: WorkerContext) -> Verdict:
    stages = _Stages()
    started = ctx.verdicts.start_scans([msg.scan_id])[0]  # its verdict, or its attempt number
    if isinstance(started, Verdict):
        write_audit(started, ctx.objects, only_if_missing=True, signer=ctx.signer)
        log.info("scan_redelivered", decision=started.decision, attempt=started.attempt)
        return started
    attempt = started
    try:
        verdict, queue_wait_ms = _judge(msg, ctx, attempt, stages)
        winner = publish(verdict, ctx.verdicts, ctx.objects, ctx.signer)
    except TransientError as exc:
        if is_outage(exc):
            _refund([msg.scan_id], ctx, exc)
        raise
    stages.lap("publish")
    _done(winner, attempt, queue_wait_ms, stages)
    return winner


def _refund(scan_ids: list[str], ctx: WorkerContext, error: BaseException) -> None:
    """Give back the attempts of deliveries that ended in an outage. Best effort: when Redis is what is
    down the refund fails too, and that delivery stays counted (logged; docs/RELIABILITY.md)."""
    if not scan_ids:
        return
    try:
        ctx.verdicts.refund_attempts(scan_ids, format_time(ctx.clock()))
    except TransientError as exc:
        log.warning("attempt_refund_failed", scans=len(scan_ids), outage=type(error).__name__,
                    error=type(exc).__name__)


def _done(winner: Verdict, attempt: int, queue_wait_ms: float, stages: _Stages, **ids: str) -> None:
    """The scan_done event and the metrics: the same numbers (the bench reads the metrics). `ids`:
    scan_id and tenant where the caller has not bound them to the log context."""
    log.info("scan_done", decision=winner.decision, reason=winner.reason, attempt=attempt,
             batch_id=winner.batch_id, batch_size=winner.batch_size, queue_wait_ms=queue_wait_ms, **stages.ms, **ids)
    telemetry.observe_scan(winner.decision, winner.reason, dict(stages.ms, queue_wait_ms=queue_wait_ms))


@dataclass
class _Judging:
    """One scan between start_scans and publish: either its verdict, or its model input."""

    msg: ScanMessage
    attempt: int
    stages: _Stages
    dequeued: str
    queue_wait_ms: float
    verdict: Verdict | None = None  # set when no inference is needed (error, expired, rejected)
    x: Any = None
    info: imaging.ImageInfo | None = None


def _before_infer(msg: ScanMessage, ctx: WorkerContext, attempt: int, stages: _Stages) -> _Judging:
    """Poison, deadline, S3 fetch, checksum, decode: a verdict already, or the model input."""
    dequeued_at = ctx.clock()
    j = _Judging(msg, attempt, stages, format_time(dequeued_at),
                 round((dequeued_at - parse_time(msg.submitted_at)).total_seconds() * 1000, 2))
    if attempt > ctx.policy.max_attempts:
        j.verdict = unjudged_verdict(msg, Decision.ERROR, Reason.INTERNAL_ERROR, f"failed {attempt - 1} deliveries",
                                     attempt, j.dequeued, format_time(ctx.clock()))
    elif msg.deadline is not None and parse_time(msg.deadline) < dequeued_at:
        j.verdict = unjudged_verdict(msg, Decision.EXPIRED, Reason.DEADLINE_EXCEEDED,
                                     f"dequeued after the deadline {msg.deadline}", attempt, j.dequeued,
                                     format_time(ctx.clock()))
    else:
        try:
            j.x, j.info = _fetch_decode(msg, ctx, stages)
        except RejectedScan as exc:
            j.verdict = unjudged_verdict(msg, Decision.REJECTED, exc.reason, exc.detail, attempt, j.dequeued,
                                         format_time(ctx.clock()))
    return j


def _after_infer(j: _Judging, ctx: WorkerContext, pred) -> Verdict:
    """This scan's share of its batch -> decision fields -> the verdict to store."""
    j.stages.ms.update(batch_wait_ms=round(pred.batch_wait_ms, 2), forward_ms=round(pred.forward_ms, 2))
    j.stages.lap("infer")
    msg = j.msg
    fields = decide.decide(pred.p_counterfeit, pred.signs, pred.denomination, ctx.runner.thresholds)
    return Verdict(
        scan_id=msg.scan_id, tenant=msg.tenant, store_id=msg.store_id, terminal_id=msg.terminal_id,
        input=_input_ref(msg, j.info),
        timestamps=Timestamps(submitted=msg.submitted_at, dequeued=j.dequeued, inference_start=pred.inference_start,
                              inference_end=pred.inference_end, completed=format_time(ctx.clock())),
        model=ctx.runner.model_ref, batch_id=pred.batch_id, batch_size=pred.batch_size, attempt=j.attempt,
        **fields.as_verdict_fields(),
    )


def _judge(msg: ScanMessage, ctx: WorkerContext, attempt: int, stages: _Stages) -> tuple[Verdict, float]:
    """Everything between start_scans and publish: the verdict to store, and the queue wait (ms)."""
    with ctx.runner.expecting(1):  # the batcher may wait for this scan while it is fetched and decoded
        j = _before_infer(msg, ctx, attempt, stages)
        future = ctx.runner.submit(j.x) if j.verdict is None else None
    if future is not None:
        j.verdict = _after_infer(j, ctx, ctx.runner.result(future))
    return j.verdict, j.queue_wait_ms


def _prepare_chunk(chunk: list[tuple[int, ScanMessage, int]], ctx: WorkerContext) -> list[tuple[int, _Judging | Exception]]:
    """_before_infer for a few scans on one executor thread (fewer thread hops than one job per scan)."""
    out: list[tuple[int, _Judging | Exception]] = []
    for i, msg, attempt in chunk:
        try:
            with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
                out.append((i, _before_infer(msg, ctx, attempt, _Stages())))
        except Exception as exc:  # noqa: BLE001 - this scan's own outcome
            out.append((i, exc))
    return out


PREPARE_CHUNK = 4  # scans fetched and decoded per executor job in process_scans
AUDIT_CHUNK = 4  # audit PUTs per executor job in process_scans (fewer thread hops, still parallel)


def _put_audits(chunk: list[tuple[int, Verdict, str]], objects: ObjectStore, signer) -> None:
    for _, winner, raw in chunk:
        write_audit(winner, objects, signer=signer, encoded=raw)  # the bytes Redis holds, signed


def process_scans(msgs: Sequence[ScanMessage], ctx: WorkerContext, executor: Executor) -> list[Verdict | BaseException]:
    """The scans of one multi-scan message, each with its own outcome, with Redis round trips per message.

        start_scans                    one round trip: a scan with a stored verdict is a redelivery
                                       (audit only), the others are marked processing and get their
                                       attempt numbers (refunded, pipelined, for the scans whose
                                       outcome is an outage: is_outage)
        fetch + decode on executor     PREPARE_CHUNK scans per job; each scan then goes to the batcher
                                       without waiting, so a message's scans fill batches together
        SET NX the verdicts            one round trip (the same Lua script as publish, for all of them)
        audit records on executor      S3 PUTs in parallel

    Returns when every scan has finished, so the message's late ack comes after its last verdict.
    An exception is returned in its scan's slot (its mates go on); the caller retries the message and
    on redelivery the scans that already have a verdict skip all work.
    """
    out: list[Verdict | BaseException | None] = [None] * len(msgs)
    try:
        started = ctx.verdicts.start_scans([m.scan_id for m in msgs])
    except Exception as exc:  # noqa: BLE001 - Redis is down: every scan fails, the message is retried
        return [exc] * len(msgs)
    audits = []
    jobs: list[tuple[int, ScanMessage, int]] = []  # (index, scan, attempt) of the scans to judge
    for i, v in enumerate(started):
        if isinstance(v, Verdict):
            out[i] = v
            audits.append((i, executor.submit(write_audit, v, ctx.objects, True, ctx.signer)))
            log.info("scan_redelivered", scan_id=v.scan_id, decision=v.decision, attempt=v.attempt)
        else:
            jobs.append((i, msgs[i], v))
    todo = [i for i, _, _ in jobs]
    # fetch + decode a few scans per executor job; as each job finishes, its scans go to the batcher
    ready: list[tuple[int, int, _Stages, Verdict, float]] = []
    inferring: list[tuple[int, _Judging, Future]] = []
    with ctx.runner.expecting(len(jobs)):  # the batcher may wait for these while they are decoded
        prepared = [executor.submit(_prepare_chunk, jobs[k:k + PREPARE_CHUNK], ctx)
                    for k in range(0, len(jobs), PREPARE_CHUNK)]
        for chunk_future in prepared:
            for i, j in chunk_future.result():
                if isinstance(j, Exception):
                    out[i] = j
                elif j.verdict is not None:
                    ready.append((i, j.attempt, j.stages, j.verdict, j.queue_wait_ms))
                else:
                    try:
                        inferring.append((i, j, ctx.runner.submit(j.x)))
                    except Exception as exc:  # noqa: BLE001 - e.g. the batcher is closing: retry this scan
                        out[i] = exc
    for i, j, future in inferring:
        try:
            ready.append((i, j.attempt, j.stages, _after_infer(j, ctx, ctx.runner.result(future)), j.queue_wait_ms))
        except Exception as exc:  # noqa: BLE001 - this scan's own outcome
            out[i] = exc
    publish_started = time.monotonic()
    try:
        saved = ctx.verdicts.save_verdicts([r[3] for r in ready])
    except Exception as exc:  # noqa: BLE001
        for r in ready:
            out[r[0]] = exc
        saved = []
    # audit records: AUDIT_CHUNK sequential PUTs per executor job
    pairs = [(r[0], winner, raw) for r, (winner, raw) in zip(ready, saved, strict=True)]
    for start in range(0, len(pairs), AUDIT_CHUNK):
        chunk = pairs[start:start + AUDIT_CHUNK]
        audits.append(([i for i, _, _ in chunk], executor.submit(_put_audits, chunk, ctx.objects, ctx.signer)))
    for idx, future in audits:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - the verdicts are stored; a redelivery writes the audits
            for i in idx if isinstance(idx, list) else [idx]:
                out[i] = exc
    outages = [i for i in todo if is_outage(out[i])]
    if outages:  # those scans give back the attempt this delivery counted
        _refund([msgs[i].scan_id for i in outages], ctx, out[outages[0]])
    publish_ms = round((time.monotonic() - publish_started) * 1000, 2)  # the message's pipelined publish
    for (i, attempt, stages, _, queue_wait_ms), (winner, _) in zip(ready, saved, strict=True):
        if out[i] is None:
            stages.ms["publish_ms"] = publish_ms
            _done(winner, attempt, queue_wait_ms, stages, scan_id=winner.scan_id, tenant=winner.tenant)
            out[i] = winner
    return out  # type: ignore[return-value]


def fail_scan(msg: ScanMessage, ctx: WorkerContext, detail: str, reason: Reason = Reason.INTERNAL_ERROR,
              attempt: int | None = None) -> Verdict:
    """Give up on a scan: a terminal `error` verdict. internal_error: it kept failing (poison);
    infrastructure_unavailable: S3 or Redis kept failing for the whole transient retry window."""
    if attempt is None:
        attempt = int((ctx.verdicts.get_scan(msg.scan_id) or {}).get("attempts") or 1)
    now = format_time(ctx.clock())
    verdict = unjudged_verdict(msg, Decision.ERROR, reason, detail, max(attempt, 1), now, now)
    winner = publish(verdict, ctx.verdicts, ctx.objects, ctx.signer)
    log.warning("scan_failed", decision=winner.decision, reason=winner.reason, attempt=attempt)
    return winner


def reject_bad_message(scan_id: str, detail: str, ctx: WorkerContext) -> Verdict | None:
    """A message that does not decode but names a scan the edge recorded: reject that scan.

    The scan's hash in Redis (written by the edge) supplies tenant and submission date, so the
    audit record lands in the right partition. Without it there is no scan to answer for.
    """
    scan = ctx.verdicts.get_scan(scan_id)
    if not scan or not scan.get("tenant") or not scan.get("submitted_at"):
        return None
    msg = ScanMessage(scan_id=scan_id, tenant=scan["tenant"], store_id=scan.get("store_id", ""),
                      terminal_id=scan.get("terminal_id", ""), image_key=scan.get("image_key", ""),
                      sha256="", bytes=0, submitted_at=scan["submitted_at"])
    now = format_time(ctx.clock())
    verdict = unjudged_verdict(msg, Decision.REJECTED, Reason.BAD_MESSAGE, detail, 1, now, now)
    return publish(verdict, ctx.verdicts, ctx.objects, ctx.signer)
