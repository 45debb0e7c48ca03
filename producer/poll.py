"""Reading a scan's state, and long-polling for its verdict without busy-looping.

One `DoneListener` per API process holds ONE Redis pub/sub connection, psubscribed to
keys.DONE_CHANNEL_PATTERN (`ts:done:*`; VerdictStore.save_verdict publishes there). Each waiting
request registers an asyncio.Event for its scan id; the listener sets the events of the scan a
message names. A waiter registers BEFORE it re-reads the scan's status, so a verdict that lands
between the read and the wait still wakes it:

    register event -> read status -> done? answer : await event (or the deadline) -> read again

While the listener is disconnected (Redis restarting) waiters fall back to re-reading once a second,
and every waiter is woken when it reconnects, since messages published meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import redis
from starlette.concurrency import run_in_threadpool

from producer.errors import INTERNAL_ERROR, ApiError, not_found
from workers.core import clock, keys, schemas
from workers.core.enums import ScanStatus
from workers.core.errors import ContractError, ObjectNotFound
from workers.core.logging import get_logger
from workers.core.review_queue import ReviewQueue
from workers.core.schemas import Review, ScanMessage, Verdict
from workers.core.storage import ObjectStore
from workers.core.verdict_store import VerdictStore

log = get_logger("producer.poll")

MAX_WAIT_S = 30.0  # longest long-poll; larger `wait` values are clamped to it
DISCONNECTED_RECHECK_S = 1.0  # re-read period while the listener has no Redis connection


class DoneListener:
    """One pub/sub connection fanning `done` messages out to per-scan asyncio events."""

    def __init__(self, aredis, pattern: str = keys.DONE_CHANNEL_PATTERN) -> None:
        self.r = aredis  # redis.asyncio.Redis
        self.pattern = pattern
        self.connected = False
        self.subscriptions = 0  # successful (re)subscriptions; more than 1 means it reconnected
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task | None = None
        self._first_try = asyncio.Event()  # set once the first subscribe succeeded or failed

    async def start(self, timeout_s: float = 3.0) -> None:
        """Start listening; waits (bounded) for the first subscribe attempt so early waiters are covered.

        Redis being down does not stop the API from starting: waiters re-read until the listener is in.
        """
        self._task = asyncio.create_task(self._run(), name="done-listener")
        with suppress(TimeoutError):
            await asyncio.wait_for(self._first_try.wait(), timeout_s)
        if not self.connected:
            log.warning("done_listener_not_ready")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._wake_all()

    @contextmanager
    def watch(self, scan_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(scan_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(scan_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[scan_id]

    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    def _wake(self, scan_id: str) -> None:
        for event in self._waiters.get(scan_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        backoff = 0.1
        prefix = self.pattern.rstrip("*")
        while True:
            pubsub = self.r.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "psubscribe":
                    pass  # the server confirmed: from here on no publish is missed
                self.connected, backoff = True, 0.1
                self.subscriptions += 1
                self._first_try.set()
                self._wake_all()  # anything published while we were away is lost: re-check
                log.info("done_listener_subscribed", pattern=self.pattern)
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg and msg.get("type") == "pmessage":
                        channel = msg["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else channel
                        self._wake(channel.removeprefix(prefix))
            except (redis.RedisError, OSError) as exc:
                if self.connected:
                    log.warning("done_listener_disconnected", error=type(exc).__name__)
                self.connected = False
                self._first_try.set()
                self._wake_all()  # waiters switch to re-reading
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with suppress(Exception):
                    await pubsub.aclose()


# --- reading a scan ------------------------------------------------------------------------------
def review_summary(review: Review) -> dict:
    """What GET /v1/scans/{id} says about a person's review (openapi.ReviewSummary)."""
    return {"label": review.label, "decision": review.final_decision, "reason": review.final_reason,
            "reviewed_by": review.reviewer, "reviewed_at": review.reviewed_at, "signs_seen": list(review.signs_seen)}


def scan_view(verdicts: VerdictStore, tenant: str, scan_id: str, objects: ObjectStore | None = None,
              days: int = 2, reviews: ReviewQueue | None = None) -> dict:
    """The answer to GET /v1/scans/{id}. Unknown, malformed and foreign ids are all the same 404.

    Redis answers first. When Redis has no state for the scan (it restarted without its data, or
    the state's TTL ran out) S3, the source of truth, answers: the audit record if there is one,
    else the intent (still `queued`: the reconciler re-enqueues it).
    """
    if not schemas.is_scan_id(scan_id):
        raise not_found()
    scan = verdicts.get_scan(scan_id)
    if scan is None and objects is not None:
        return _view_from_s3(objects, tenant, scan_id, days)
    if scan is None or scan.get("tenant") != tenant:
        raise not_found()
    view = {"scan_id": scan_id, "status": scan.get("status", ScanStatus.QUEUED.value),
            "submitted_at": scan.get("submitted_at")}
    if view["status"] == ScanStatus.DONE:
        try:
            verdict = verdicts.get_verdict(scan_id)
        except ContractError as exc:  # a stored verdict that does not decode is our bug, not the client's
            log.error("verdict_undecodable", scan_id=scan_id, detail=exc.detail)
            raise ApiError(500, INTERNAL_ERROR, "the stored verdict is unreadable") from None
        if verdict is not None:
            view["verdict"] = dataclasses.asdict(verdict)
            view["final_decision"] = verdict.decision
            review = reviews.get_review(scan_id) if reviews is not None else None
            if review is not None and review.tenant == tenant:
                view["final_decision"] = review.final_decision
                view["review"] = review_summary(review)
    return view


def _view_from_s3(objects: ObjectStore, tenant: str, scan_id: str, days: int) -> dict:
    """Look for the scan in the tenant's own partitions of the last `days` days (never another's)."""
    today = datetime.now(UTC)
    for back in range(days):
        dt = clock.format_time(today - timedelta(days=back))  # the key functions read its date
        try:
            record = objects.get(keys.verdict_s3_key(tenant, scan_id, dt)).data
        except ObjectNotFound:
            pass
        else:
            verdict = Verdict.decode(record)
            return {"scan_id": scan_id, "status": ScanStatus.DONE.value,
                    "submitted_at": verdict.timestamps.submitted, "verdict": dataclasses.asdict(verdict),
                    "final_decision": verdict.decision}
        try:
            intent = ScanMessage.decode(objects.get(keys.intent_s3_key(tenant, scan_id, dt)).data)
        except ObjectNotFound:
            continue
        return {"scan_id": scan_id, "status": ScanStatus.QUEUED.value, "submitted_at": intent.submitted_at}
    raise not_found()


async def wait_for_scan(verdicts: VerdictStore, listener: DoneListener, tenant: str, scan_id: str,
                        wait_s: float, objects: ObjectStore | None = None, reviews: ReviewQueue | None = None) -> dict:
    """scan_view now, or as soon as the scan is done, or at the deadline (whichever comes first)."""
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    with listener.watch(scan_id) as event:  # register first, then read: no lost wake-up
        while True:
            view = await run_in_threadpool(scan_view, verdicts, tenant, scan_id, objects, 2, reviews)
            remaining = deadline - time.monotonic()
            if view["status"] == ScanStatus.DONE or remaining <= 0:
                return view
            slice_s = remaining if listener.connected else min(remaining, DISCONNECTED_RECHECK_S)
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), slice_s)
            event.clear()
