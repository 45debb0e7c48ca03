"""The scans of one queue message, from the message to their published verdicts. Plain functions; the
Celery tasks call them, and nothing here knows about Celery. One path: a one-scan message is a
message of one.

    process_scans(msgs, ctx)   one outcome per scan, in order (its Verdict, or the exception that stopped
                               it); returns when every scan has finished, so the message's late ack
                               comes after its last verdict
      start_scans              one Redis round trip: per scan, its stored verdict (a redelivery: make
                               sure its audit record exists, nothing else) or its attempt number, counted
      prepare, per scan        past max_attempts          -> `error` (internal_error), no further work
                               past its deadline          -> `expired` (deadline_exceeded), no inference
                               S3 get (max_bytes)         -> image_missing / image_too_large
                               length, sha256 == message's -> size_mismatch / checksum_mismatch
                               direct upload: magic bytes -> type_mismatch, unsupported_format
                               imaging.decode             -> the RejectedScan's reason
                               preprocess                 -> the model input, to the batcher at once
      runner.result, decide    the scan's share of its batch -> the decision fields -> its verdict
      publish                  one SET NX script call for all the verdicts, then each winner's stored
                               bytes to S3 (publish.py)
      refund                   the scans whose outcome is an outage give back the attempt counted
    process_scan(msg, ctx)     process_scans([msg], ctx): the verdict, or its exception raised

Where the work runs (ctx.executor_for): a message of one in its task thread, start to end; a
multi-scan message's scans PREPARE_CHUNK per job on the context's fan-out threads, each chunk's
scans going to the batcher as soon as it is ready, so a message's scans fill batches together.

Every bad input ends in its own `rejected` verdict; an exception (TransientError for Redis, S3, a
stuck runner) is that scan's outcome alone, and its message-mates go on; the task retries the
message, and on redelivery the scans that already have a verdict skip all work. A delivery that
ends in an outage (S3 or Redis: errors.is_outage) gives back the attempt start_scans counted, best
effort (`_refund`): the poison cap counts deliveries that crashed, hung or failed for a reason of
the scan's own, never outages; the task bounds outages by time instead (runtime/retrying.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from workers.core import imaging, telemetry
from workers.core.clock import format_time, parse_time
from workers.core.enums import Decision, Reason
from workers.core.errors import ObjectNotFound, RejectedScan, TransientError, is_outage
from workers.core.keys import CONTENT_TYPES, is_upload_key
from workers.core.schemas import InputRef, ScanMessage, Timestamps, Verdict
from workers.core.storage import StoredObject, TooLarge
from workers.runtime import decide
from workers.runtime.publish import publish, publish_one, queue_for_review, write_audit
from workers.runtime.shadow import record_shadow

if TYPE_CHECKING:
    from workers.runtime.context import WorkerContext

log = structlog.get_logger("workers.runtime.pipeline")

PREPARE_CHUNK = 4  # scans fetched and decoded per fan-out job (fewer thread hops than one job per scan)


@dataclass
class _Stages:
    """Per-stage milliseconds for the scan_done event (metrics later read the same names)."""

    ms: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.ms[name + "_ms"] = round((now - self._t) * 1000, 2)
        self._t = now


@dataclass(frozen=True)
class Scan:
    """One scan of the message on its way to a verdict: known without inference, or its model input."""

    index: int  # its place in the message: where its outcome goes
    msg: ScanMessage
    attempt: int  # this delivery's attempt number (counted by start_scans)
    dequeued: str  # when this delivery began (clock format)
    queue_wait_ms: float  # from its submission to its dequeue
    stages: _Stages  # its stage timings so far
    verdict: Verdict | None = None  # decided without inference (error, expired, rejected), or after it
    x: Any = None  # the model input, when inference is needed
    info: imaging.ImageInfo | None = None  # the decoded image's format and size


def process_scans(msgs: Sequence[ScanMessage], ctx: WorkerContext) -> list[Verdict | BaseException]:
    """Each scan of one message to its verdict, or to the exception that stopped it (see the module
    docstring). Returns when all have finished."""
    outcomes: list[Verdict | BaseException | None] = [None] * len(msgs)
    executor = ctx.executor_for(len(msgs))
    try:
        with telemetry.cpu_stage("verdict_store"):
            started = ctx.verdicts.start_scans([m.scan_id for m in msgs])
    except Exception as exc:  # noqa: BLE001 - Redis is down: every scan fails, the message is retried
        return [exc] * len(msgs)
    redelivered: list[tuple[int, Future]] = []  # (index, its audit record being made sure of)
    todo: list[tuple[int, ScanMessage, int]] = []  # (index, scan, attempt) of the scans to judge
    for i, (msg, stored) in enumerate(zip(msgs, started, strict=True)):
        if isinstance(stored, Verdict):  # a redelivery: its verdict is final, its audit record may be missing
            outcomes[i] = stored
            redelivered.append((i, executor.submit(write_audit, stored, ctx.objects, only_if_missing=True,
                                                   signer=ctx.signer)))
            log.info("scan_redelivered", scan_id=msg.scan_id, decision=stored.decision, attempt=stored.attempt)
        else:
            todo.append((i, msg, stored))
    if redelivered:  # its first delivery may have stored the verdict and failed to queue it for review
        try:
            queue_for_review([outcomes[i] for i, _ in redelivered], ctx)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - Redis is down: those scans are retried
            for i, _ in redelivered:
                outcomes[i] = exc
    judged = _judge(todo, ctx, executor, outcomes)
    publish_started = time.monotonic()
    winners = publish([s.verdict for s in judged], ctx, executor)
    publish_ms = round((time.monotonic() - publish_started) * 1000, 2)  # the message's, pipelined
    for i, future in redelivered:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - the verdict is stored; the next redelivery writes the record
            outcomes[i] = exc
    for scan, winner in zip(judged, winners, strict=True):
        outcomes[scan.index] = winner
    outages = [i for i, _, _ in todo if is_outage(outcomes[i])]
    if outages:  # those scans give back the attempt this delivery counted
        _refund([msgs[i].scan_id for i in outages], ctx, outcomes[outages[0]])
    for scan, winner in zip(judged, winners, strict=True):
        if isinstance(winner, Verdict):
            scan.stages.ms["publish_ms"] = publish_ms
            _done(winner, scan)
    return outcomes  # type: ignore[return-value] - every slot is filled by now


def process_scan(msg: ScanMessage, ctx: WorkerContext) -> Verdict:
    """A message of one: its verdict, or the exception that stopped it."""
    (outcome,) = process_scans([msg], ctx)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _judge(todo: list[tuple[int, ScanMessage, int]], ctx: WorkerContext, executor: Executor,
           outcomes: list) -> list[Scan]:
    """Prepare every scan (PREPARE_CHUNK per executor job), hand each model input to the batcher as soon
    as its chunk is ready, then turn each scan's share of its batch into its verdict. Returns the scans
    with a verdict; a scan that failed has its exception in `outcomes` instead."""
    judged: list[Scan] = []
    inferring: list[tuple[Scan, Future]] = []
    with ctx.runner.expecting(len(todo)):  # the batcher may wait for these while they are fetched and decoded
        chunks = [executor.submit(_prepare_chunk, todo[k:k + PREPARE_CHUNK], ctx)
                  for k in range(0, len(todo), PREPARE_CHUNK)]
        for chunk in chunks:
            for i, prepared in chunk.result():
                if isinstance(prepared, Exception):
                    outcomes[i] = prepared
                elif prepared.verdict is not None:
                    judged.append(prepared)
                else:
                    try:
                        inferring.append((prepared, ctx.runner.submit(prepared.x)))
                    except Exception as exc:  # noqa: BLE001 - e.g. the batcher is closing: retry this scan
                        outcomes[i] = exc
    for scan, future in inferring:
        try:
            judged.append(_after_infer(scan, ctx, ctx.runner.result(future)))
        except Exception as exc:  # noqa: BLE001 - this scan's own outcome (InferenceTimeout: a hang)
            outcomes[scan.index] = exc
    return judged


def _prepare_chunk(chunk: list[tuple[int, ScanMessage, int]], ctx: WorkerContext) -> list[tuple[int, Scan | Exception]]:
    """_prepare for a few scans in one executor job, each with its own outcome."""
    out: list[tuple[int, Scan | Exception]] = []
    for i, msg, attempt in chunk:
        try:
            with structlog.contextvars.bound_contextvars(scan_id=msg.scan_id, tenant=msg.tenant):
                out.append((i, _prepare(i, msg, ctx, attempt)))
        except Exception as exc:  # noqa: BLE001 - this scan's own outcome
            out.append((i, exc))
    return out


def _prepare(index: int, msg: ScanMessage, ctx: WorkerContext, attempt: int) -> Scan:
    """Poison, deadline, S3 fetch, checks, decode: a verdict already, or the model input."""
    stages = _Stages()
    dequeued_at = ctx.clock()
    scan = Scan(index, msg, attempt, format_time(dequeued_at),
                round((dequeued_at - parse_time(msg.submitted_at)).total_seconds() * 1000, 2), stages)
    if attempt > ctx.policy.max_attempts:
        return replace(scan, verdict=unjudged_verdict(msg, Decision.ERROR, Reason.INTERNAL_ERROR,
                                                      f"failed {attempt - 1} deliveries", attempt, scan.dequeued,
                                                      format_time(ctx.clock())))
    if msg.deadline is not None and parse_time(msg.deadline) < dequeued_at:
        return replace(scan, verdict=unjudged_verdict(msg, Decision.EXPIRED, Reason.DEADLINE_EXCEEDED,
                                                      f"dequeued after the deadline {msg.deadline}", attempt,
                                                      scan.dequeued, format_time(ctx.clock())))
    try:
        x, info = _fetch_decode(msg, ctx, stages)
    except RejectedScan as exc:
        return replace(scan, verdict=unjudged_verdict(msg, Decision.REJECTED, exc.reason, exc.detail, attempt,
                                                      scan.dequeued, format_time(ctx.clock())))
    return replace(scan, x=x, info=info)


def _after_infer(scan: Scan, ctx: WorkerContext, pred) -> Scan:
    """This scan's share of its batch -> decision fields -> the verdict to store."""
    scan.stages.ms.update(batch_wait_ms=round(pred.batch_wait_ms, 2), forward_ms=round(pred.forward_ms, 2))
    scan.stages.lap("infer")
    msg = scan.msg
    with telemetry.cpu_stage("decide"):
        return _verdict_of(scan, ctx, pred, msg)


def _verdict_of(scan: Scan, ctx: WorkerContext, pred, msg: ScanMessage) -> Scan:
    served = getattr(pred, "served", None)  # the model that preprocessed and ran it (runtime/rollout.py)
    model = served if served is not None else ctx.runner  # (a test twin's predictions name none)
    fields = decide.decide(pred.p_counterfeit, pred.signs, pred.denomination, model.thresholds,
                           kind=getattr(pred, "kind", None), ood=getattr(pred, "ood", None),
                           seen=getattr(scan.x, "seen", None))
    verdict = Verdict(
        scan_id=msg.scan_id, tenant=msg.tenant, store_id=msg.store_id, terminal_id=msg.terminal_id,
        input=_input_ref(msg, scan.info),
        timestamps=Timestamps(submitted=msg.submitted_at, dequeued=scan.dequeued,
                              inference_start=pred.inference_start, inference_end=pred.inference_end,
                              completed=format_time(ctx.clock())),
        model=served.ref if served is not None else ctx.runner.model_ref, batch_id=pred.batch_id,
        batch_size=pred.batch_size, attempt=scan.attempt,
        **fields.as_verdict_fields(),
    )
    if served is not None:
        served.record(verdict.decision, verdict.scan_id)  # its own metrics, and the canary's judge
    if getattr(pred, "shadow", None) is not None:  # a shadow's answer: recorded beside it, never returned
        shadow_input = getattr(scan.x, "shadow", None)
        record_shadow(ctx.verdicts, verdict, pred.shadow, getattr(shadow_input, "seen", None))
    return replace(scan, verdict=verdict, x=None)  # the input is no longer needed: let it go


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
        with telemetry.cpu_stage("fetch"):
            obj = ctx.objects.get(msg.image_key, max_bytes=ctx.limits.max_bytes)
    except TooLarge as exc:
        raise RejectedScan(Reason.IMAGE_TOO_LARGE, f"{exc.size} bytes > limit {ctx.limits.max_bytes}") from None
    except ObjectNotFound:
        raise RejectedScan(Reason.IMAGE_MISSING, "no object at the scan's image key") from None
    stages.lap("fetch")
    with telemetry.cpu_stage("checksum"):
        _check_arrived(msg, obj)
    with telemetry.cpu_stage("decode"):
        image, info = imaging.decode(obj.data, ctx.limits)
    route = getattr(ctx.runner, "preprocess_for", None)  # the model rollout's hook: the scan picks its model
    with telemetry.cpu_stage("canonical"):
        x = route(image, msg.scan_id) if route is not None else ctx.runner.preprocess(image)
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


def _refund(scan_ids: list[str], ctx: WorkerContext, error: BaseException) -> None:
    """Give back the attempts of deliveries that ended in an outage. Best effort: when Redis is what is
    down the refund fails too, and that delivery stays counted (logged; docs/RELIABILITY.md)."""
    try:
        ctx.verdicts.refund_attempts(scan_ids, format_time(ctx.clock()))
    except TransientError as exc:
        log.warning("attempt_refund_failed", scans=len(scan_ids), outage=type(error).__name__,
                    error=type(exc).__name__)


def _done(winner: Verdict, scan: Scan) -> None:
    """The scan_done event and the metrics: the same numbers (the bench reads the metrics)."""
    with telemetry.cpu_stage("events"):
        _event(winner, scan)


def _event(winner: Verdict, scan: Scan) -> None:
    log.info("scan_done", scan_id=winner.scan_id, tenant=winner.tenant, decision=winner.decision,
             reason=winner.reason, attempt=scan.attempt, batch_id=winner.batch_id, batch_size=winner.batch_size,
             queue_wait_ms=scan.queue_wait_ms, **scan.stages.ms)
    telemetry.observe_scan(winner.decision, winner.reason, dict(scan.stages.ms, queue_wait_ms=scan.queue_wait_ms))
    telemetry.observe_verdict(winner.tenant, winner.store_id, winner.terminal_id, winner.decision, winner.p_counterfeit)


def fail_scan(msg: ScanMessage, ctx: WorkerContext, detail: str, reason: Reason = Reason.INTERNAL_ERROR,
              attempt: int | None = None) -> Verdict:
    """Give up on a scan: a terminal `error` verdict. internal_error: it kept failing (poison);
    infrastructure_unavailable: S3 or Redis kept failing for the whole transient retry window."""
    if attempt is None:
        attempt = int((ctx.verdicts.get_scan(msg.scan_id) or {}).get("attempts") or 1)
    now = format_time(ctx.clock())
    verdict = unjudged_verdict(msg, Decision.ERROR, reason, detail, max(attempt, 1), now, now)
    winner = publish_one(verdict, ctx)
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
    return publish_one(verdict, ctx)
