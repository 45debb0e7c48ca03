"""Accepting a scan: check the bytes, store them, record the scan, enqueue one reference.

    accept_scan(upload)
      1. store_id / terminal_id / Idempotency-Key are boring ids            400 bad_request
      2. imaging.inspect: JPEG/PNG by content, pixel cap, side limits        413 / 415 / 422
      3. Idempotency-Key claimed (SET NX {scan_id, sha256})                  replay -> same scan_id, no task
      4. image -> S3 at keys.image_s3_key, metadata sha256 & co.; then the intent (ScanMessage
         JSON) at keys.intent_s3_key: the durable source of truth the reconciler works from
      5. VerdictStore.create_scan (status queued)
      6. Enqueuer.enqueue(ScanMessage)  -- a reference and a checksum, never the bytes
    by reference (a direct upload, producer/uploads.py): 2 is skipped (the worker checks the bytes), the
      claim in 3 is the upload id's, 4 writes the intent only (its image_key is the upload's key)
    accept_many(uploads)  (POST /v1/scans:batch): 1-5 per upload, each with its own outcome, then the
      accepted scans go out `scans_per_message` to one `process_scans` message (enqueue_many)
    If 4-6 fail (S3, Redis or broker down) the claim is released, so the client's retry is a fresh
    attempt rather than a replay of a scan that never got queued, and the error goes up as a 503.

Blocking (boto3, redis-py, kombu): the HTTP layer runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from producer.errors import IDEMPOTENCY_KEY_REUSED, ApiError, bad_request, unavailable
from producer.uploads import UPLOAD_ALREADY_SUBMITTED, Reference
from workers.core import clock, keys, schemas
from workers.core.enums import ScanStatus
from workers.core.errors import ObjectNotFound, RejectedScan, StorageError, TransientError
from workers.core.imaging import ImageInfo, Limits, inspect
from workers.core.logging import get_logger
from workers.core.schemas import MultiScanMessage, ScanMessage
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore

log = get_logger("producer.submit")

# An Idempotency-Key claim younger than this whose scan has no intent in S3 may still be in the
# middle of being accepted; an older one was abandoned (its request failed before the intent).
IN_PROGRESS_S = 10.0


# --- the queue, behind a small interface -------------------------------------------------------
class Enqueuer(Protocol):
    def enqueue(self, msg: ScanMessage) -> None: ...
    def enqueue_many(self, msgs: list[ScanMessage]) -> None: ...  # one multi-scan message
    def close(self) -> None: ...


@dataclass
class ListEnqueuer:
    """In-memory twin: remembers what would have been sent. `down = True` makes enqueue fail."""

    sent: list[dict] = field(default_factory=list)
    down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enqueue(self, msg: ScanMessage) -> None:
        if self.down:
            raise TransientError("broker is down")
        with self._lock:
            self.sent.append(msg.encode())

    def enqueue_many(self, msgs: list[ScanMessage]) -> None:
        if self.down:
            raise TransientError("broker is down")
        with self._lock:
            self.sent.append(MultiScanMessage(tuple(msgs)).encode())

    def close(self) -> None:
        pass


class CeleryEnqueuer:
    """`send_task(TASK_NAME, args=[msg.encode()], queue=QUEUE)` on the workers' Celery app (JSON only)."""

    # Give up quickly when the broker is down: the client retries on 503, a blocked thread helps nobody.
    RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

    def __init__(self, app) -> None:
        self.app = app

    @classmethod
    def from_settings(cls, settings) -> CeleryEnqueuer:
        from workers.core.celery_app import make_celery  # JSON-only app; must not import torch

        return cls(make_celery(settings))

    def enqueue(self, msg: ScanMessage) -> None:
        self._send(keys.TASK_NAME, msg.encode())

    def enqueue_many(self, msgs: list[ScanMessage]) -> None:
        """One `process_scans` message for several scans (bulk submissions)."""
        self._send(keys.MULTI_TASK_NAME, MultiScanMessage(tuple(msgs)).encode())

    def _send(self, task: str, arg: dict) -> None:
        import kombu.exceptions
        import redis

        try:
            self.app.send_task(task, args=[arg], queue=keys.QUEUE, retry=True, retry_policy=self.RETRY_POLICY)
        except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
            raise TransientError(f"broker unavailable ({type(exc).__name__})") from None

    def close(self) -> None:
        self.app.close()


# --- accepting one upload ----------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    tenant: str
    store_id: str
    terminal_id: str
    data: bytes
    idempotency_key: str | None = None
    deadline_s: float | None = None  # no verdict wanted after this many seconds: `expired` instead
    limits: Limits | None = None  # the tenant's image caps (producer/limits.py); None = the Submitter's
    reference: Reference | None = None  # a direct upload already in S3 (producer/uploads.py); data is b""


@dataclass(frozen=True)
class Accepted:
    scan_id: str
    status: str = ScanStatus.QUEUED.value  # the scan's status now (a replay may find it further along)
    replayed: bool = False  # an Idempotency-Key replay: the earlier scan, no new task
    info: ImageInfo | None = None


@dataclass(frozen=True)
class Submitter:
    objects: ObjectStore
    verdicts: VerdictStore
    enqueuer: Enqueuer
    limits: Limits
    idempotency_ttl_s: int
    scans_per_message: int = 1  # accept_many: scans per multi-scan queue message

    def accept(self, upload: Upload) -> Accepted:
        prepared = self._prepare(upload)
        if isinstance(prepared, Accepted):
            return prepared
        msg, info = prepared
        try:
            self._store_and_enqueue(msg, upload, info)
        except (TransientError, StorageError):
            self._release_claim(upload)
            raise
        return Accepted(msg.scan_id, info=info)

    def accept_many(self, uploads: list[Upload]) -> list[Accepted | Exception]:
        """Bulk: each upload's own outcome (Accepted, or the exception `accept` would have raised).

        Every scan is checked, stored and recorded on its own; the accepted ones are then enqueued
        `scans_per_message` to a message. A chunk the broker refuses turns into 503s for its scans
        only (their intents withdrawn, their Idempotency-Key claims released), like `accept`.
        """
        out: list[Accepted | Exception] = []
        pending: list[tuple[int, ScanMessage]] = []
        for i, upload in enumerate(uploads):
            try:
                prepared = self._prepare(upload)
                if isinstance(prepared, Accepted):
                    out.append(prepared)
                    continue
                msg, info = prepared
                try:
                    self._store(msg, upload, info)
                except (TransientError, StorageError):
                    self._release_claim(upload)
                    raise
                out.append(Accepted(msg.scan_id, info=info))
                pending.append((i, msg))
            except (ApiError, RejectedScan, TransientError, StorageError) as exc:
                out.append(exc)
        size = max(1, self.scans_per_message)
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            try:
                if len(chunk) == 1:
                    self.enqueuer.enqueue(chunk[0][1])
                else:
                    self.enqueuer.enqueue_many([m for _, m in chunk])
            except (TransientError, StorageError) as exc:
                for i, msg in chunk:
                    self._withdraw(msg, upload)
                    self._release_claim(uploads[i])
                    out[i] = exc
        return out

    def _prepare(self, upload: Upload) -> tuple[ScanMessage, ImageInfo] | Accepted:
        """Checks, idempotency claim, and the scan's message; an Accepted when it is a replay."""
        _check_ids(upload)
        ref = upload.reference
        if ref is None:
            info = inspect(upload.data, upload.limits or self.limits)  # RejectedScan -> 413/415/422
            sha256 = hashlib.sha256(upload.data).hexdigest()
        else:  # by reference: the edge saw a HEAD only; the worker checks the bytes against sha256
            info, sha256 = None, ref.sha256
        scan_id, submitted_at = schemas.new_scan_id(), clock.utcnow()
        key = upload.idempotency_key
        if key is not None:
            for _ in range(2):
                earlier = self.verdicts.claim_idempotency(upload.tenant, key, scan_id, sha256, submitted_at,
                                                          self.idempotency_ttl_s)
                if earlier is None:
                    break  # ours: accept it
                replay = self._replay(upload, *earlier, sha256=sha256)
                if replay is not None:
                    return replay
                # the earlier attempt never became durable and its claim was dropped: claim again
            else:
                raise unavailable("a request with this Idempotency-Key is still in progress", retry_after_s=1)
        msg = ScanMessage(scan_id=scan_id, tenant=upload.tenant, store_id=upload.store_id,
                          terminal_id=upload.terminal_id,
                          image_key=ref.key if ref else keys.image_s3_key(upload.tenant, scan_id, submitted_at,
                                                                              info.format),
                          sha256=sha256, bytes=ref.bytes if ref else len(upload.data), submitted_at=submitted_at,
                          deadline=_deadline(submitted_at, upload.deadline_s))
        return msg, info

    def _release_claim(self, upload: Upload) -> bool:
        """True when no claim is left behind (none was made, or it was released)."""
        return upload.idempotency_key is None or self._release(upload.tenant, upload.idempotency_key)

    def _store(self, msg: ScanMessage, upload: Upload, info: ImageInfo) -> None:
        """Image and intent to S3, then the scan state in Redis (withdrawing the intent on failure)."""
        metadata = {"sha256": msg.sha256, "tenant": msg.tenant, "store_id": msg.store_id,
                    "terminal_id": msg.terminal_id, "submitted_at": msg.submitted_at}
        if upload.reference is None:  # a direct upload's image is in S3 already
            self.objects.put(msg.image_key, upload.data, keys.CONTENT_TYPES[info.format], metadata)
        # The intent is the durable record of the acceptance: the reconciler re-enqueues from it
        # if Redis or the broker later lose the scan (workers/runtime/reconcile.py).
        intent_key = keys.intent_s3_key(msg.tenant, msg.scan_id, msg.submitted_at)
        self.objects.put(intent_key, json.dumps(msg.encode()).encode(), "application/json")
        try:
            self.verdicts.create_scan(msg)
        except (TransientError, StorageError):
            self._withdraw(msg, upload)
            raise

    def _withdraw(self, msg: ScanMessage, upload: Upload) -> None:
        """Undo an acceptance we are about to answer 503 for: claim first, then the intent.

        If the claim cannot be released (Redis is down) the intent stays: should Redis come back
        with the claim, the client's retry replays to this scan, which the reconciler then queues.
        """
        if not self._release_claim(upload):
            log.warning("intent_kept", scan_id=msg.scan_id, tenant=msg.tenant)
            return
        try:
            self.objects.delete(keys.intent_s3_key(msg.tenant, msg.scan_id, msg.submitted_at))
        except (TransientError, StorageError):
            log.warning("intent_withdraw_failed", scan_id=msg.scan_id, tenant=msg.tenant)

    def _store_and_enqueue(self, msg: ScanMessage, upload: Upload, info: ImageInfo) -> None:
        self._store(msg, upload, info)
        try:
            self.enqueuer.enqueue(msg)
        except (TransientError, StorageError):
            # We answer 503, so the client will retry under a new scan_id: withdraw this intent so
            # the reconciler does not process a scan nobody waits for. Best effort: if S3 is down too,
            # the orphan gets a verdict nobody polls, which costs one inference and loses nothing.
            self._withdraw(msg, upload)
            raise

    def _replay(self, upload: Upload, earlier_id: str, earlier_sha: str, earlier_submitted_at: str,
                sha256: str) -> Accepted | None:
        """The same key again. S3 decides: the earlier scan was accepted iff its intent exists.

        Intent there -> answer with that scan (restoring its Redis state if Redis lost it; the
        reconciler queues it if the broker lost it). No intent and the claim is young -> the first
        request may still be writing it: 503, retry in a second. No intent and the claim is old -> the
        first attempt failed before it was durable: drop its claim and state, and accept this one.
        """
        if earlier_sha != sha256 and upload.reference is not None:
            raise ApiError(409, UPLOAD_ALREADY_SUBMITTED, "this upload was submitted before with another sha256")
        if earlier_sha != sha256:
            raise ApiError(422, IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used for a different image")
        intent_key = keys.intent_s3_key(upload.tenant, earlier_id, earlier_submitted_at or clock.utcnow())
        try:
            msg = ScanMessage.decode(self.objects.get(intent_key).data)
        except ObjectNotFound:
            msg = None
        if msg is not None:
            self.verdicts.restore_scan(msg)  # a no-op unless Redis lost the state
            scan = self.verdicts.get_scan(earlier_id) or {}
            log.info("idempotent_replay", scan_id=earlier_id, tenant=upload.tenant)
            return Accepted(earlier_id, status=scan.get("status", ScanStatus.QUEUED.value), replayed=True)
        age_s = (clock.parse_time(clock.utcnow()) - clock.parse_time(earlier_submitted_at)).total_seconds() \
            if earlier_submitted_at else IN_PROGRESS_S
        if age_s < IN_PROGRESS_S:
            raise unavailable("a request with this Idempotency-Key is still in progress", retry_after_s=1)
        log.warning("idempotency_claim_abandoned", scan_id=earlier_id, tenant=upload.tenant)
        self.verdicts.forget_scan(earlier_id)
        self.verdicts.release_idempotency(upload.tenant, upload.idempotency_key, earlier_id)
        return None

    def _release(self, tenant: str, key: str) -> bool:
        try:
            self.verdicts.release_idempotency(tenant, key)
        except TransientError as exc:  # Redis is down too; the claim expires with its TTL
            log.warning("idempotency_release_failed", tenant=tenant, error=str(exc))
            return False
        return True


def _deadline(submitted_at: str, deadline_s: float | None) -> str | None:
    if deadline_s is None:
        return None
    return clock.format_time(clock.parse_time(submitted_at) + timedelta(seconds=deadline_s))


def _check_ids(upload: Upload) -> None:
    for name in ("store_id", "terminal_id"):
        value = getattr(upload, name)
        if not value or not schemas.is_safe_id(value):
            raise bad_request(f"{name} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    key = upload.idempotency_key
    if key is not None and upload.reference is None and not schemas.is_safe_id(key):
        raise bad_request("Idempotency-Key must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
