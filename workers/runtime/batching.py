"""Dynamic batching inside one worker process: many task threads in, one forward pass at a time out.

    task thread ──submit(x)──▶ pending deque ──plan()──▶ batcher thread: run_batch(items) ──▶ futures
       (blocks on its Future)                                 (one batch at a time)

`ScanSlots` bounds the scans of multi-scan messages in flight in one process (the threads pool
bounds single-scan messages by itself).

`plan` is the whole policy, as a pure function of (pending count, age of the oldest, now, limits,
whether more items are on their way): take a full batch as soon as `max_size` items wait; take
everything once the oldest has waited `max_wait_s`, or at once when no other item is on its way
(nothing could fill the batch); otherwise sleep for the rest of that window. `Batcher` is the
thread that applies it; the worker's task threads tell it which items are on their way (`expecting`).

Each item has its own outcome. `run_batch` returns one output per input (checked, as LitServe's
batched loop does); an output that is an exception fails only its own future. If `run_batch` raises
for a batch of several items, the batcher re-runs them one at a time, so one poison input cannot
fail its batch-mates.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("workers.runtime.batching")


@dataclass(frozen=True)
class BatchPlan:
    take: int  # items to take from the head of the queue now (0 = none yet)
    wait_s: float  # when take == 0: how long to sleep before asking again (inf = until an item arrives)


def plan(pending: int, oldest_enqueued_at: float | None, now: float, max_size: int, max_wait_s: float,
         more_coming: bool = True) -> BatchPlan:
    """The batching policy. Times are seconds on one monotonic clock. `more_coming` False: no other item
    is on its way, so waiting could not fill the batch, only delay it: a partial batch leaves at once."""
    if pending <= 0 or oldest_enqueued_at is None:
        return BatchPlan(0, math.inf)
    if pending >= max_size:
        return BatchPlan(max_size, 0.0)
    waited = now - oldest_enqueued_at
    if waited >= max_wait_s or not more_coming:
        return BatchPlan(pending, 0.0)
    return BatchPlan(0, max_wait_s - waited)


class BatchLengthError(RuntimeError):
    """run_batch returned a different number of outputs than it was given inputs."""


@dataclass
class _Pending:
    item: Any
    future: Future
    enqueued_at: float


@dataclass
class Batcher:
    """One thread forming batches for `run_batch(items) -> outputs`. `submit` is thread-safe.

    `flush_when_idle`: callers announce the items they are about to submit (`expecting`, from before
    their fetch and decode until the submit), and a partial batch waits for announced items only:
    once none is on its way it leaves at once, since the rest of the window could only add latency
    (a lone scan at light load waited the whole max_wait). Without it the window alone decides.
    """

    run_batch: Callable[[Sequence[Any]], Sequence[Any]]
    max_size: int
    max_wait_s: float
    clock: Callable[[], float] = time.monotonic
    name: str = "batcher"
    flush_when_idle: bool = False
    _pending: deque[_Pending] = field(default_factory=deque, init=False, repr=False)
    _incoming: int = field(default=0, init=False)  # announced items not yet past their `expecting` block
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _closed: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be >= 1")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._pending.append(_Pending(item, future, self.clock()))
            # only these change the plan (a window opens, a batch is full); waking the batcher thread
            # for every item made it take the GIL and the lock up to 64 times per message for nothing
            if len(self._pending) == 1 or len(self._pending) >= self.max_size:
                self._cond.notify()
        return future

    @contextmanager
    def expecting(self, n: int = 1) -> Iterator[None]:
        """Announce `n` items that will be submitted inside this block (or turn out not to need the batcher)."""
        with self._cond:
            self._incoming += n
        try:
            yield
        finally:
            with self._cond:
                self._incoming -= n
                if not self._incoming and self._pending:
                    self._cond.notify()  # with flush_when_idle the plan may now say: go

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def is_alive(self) -> bool:
        """The batcher thread runs (the worker's liveness heartbeat asks this)."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking items, run what is pending, and join the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- the batcher thread ---------------------------------------------------------------------
    def _next_batch(self) -> list[_Pending] | None:
        with self._cond:
            while True:
                if self._closed and not self._pending:
                    return None
                oldest = self._pending[0].enqueued_at if self._pending else None
                max_wait = 0.0 if self._closed else self.max_wait_s  # on close, flush at once
                more_coming = self._incoming > 0 or not self.flush_when_idle
                p = plan(len(self._pending), oldest, self.clock(), self.max_size, max_wait, more_coming)
                if p.take:
                    batch = [self._pending.popleft() for _ in range(p.take)]
                    return [b for b in batch if b.future.set_running_or_notify_cancel()]
                self._cond.wait(None if math.isinf(p.wait_s) else p.wait_s)

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        try:
            outputs = self._call([b.item for b in batch])
        except Exception as exc:  # noqa: BLE001 - the whole batch failed; find out who caused it
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning("batch_failed_isolating", size=len(batch), error=type(exc).__name__)
            for b in batch:
                self._run([b])
            return
        for b, out in zip(batch, outputs, strict=True):
            if isinstance(out, BaseException):
                b.future.set_exception(out)
            else:
                b.future.set_result(out)

    def _call(self, items: list[Any]) -> Sequence[Any]:
        outputs = self.run_batch(items)
        if len(outputs) != len(items):
            raise BatchLengthError(f"run_batch returned {len(outputs)} outputs for {len(items)} inputs")
        return outputs


class ScanSlots:
    """At most `capacity` scans of multi-scan messages in flight in one worker process.

    A task thread holds one single-scan message, so the threads pool bounds those scans by itself
    (settings.worker_concurrency). A multi-scan message brings up to 256 scans into its one thread, so
    without this a prefetched backlog of them would put thousands of scans into fetch, decode and
    the batcher at once, where their threads only fight over the GIL. `acquire(n)` blocks until `n`
    slots are free; a message larger than the capacity runs alone (it takes them all), so none waits
    forever. The message stays unacked while it waits, like any reserved message.

    Waiters are served first come, first served, and `release` hands the freed slots to the waiters
    at the head of the line itself, waking only those: with dozens of prefetched messages waiting, a
    wake-all on every release had each of them take the GIL to find it still does not fit.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._in_use = 0
        self._lock = threading.Lock()
        self._waiting: deque[tuple[int, threading.Lock]] = deque()  # (slots wanted, a held gate), in order

    def acquire(self, n: int) -> int:
        """Wait for `n` slots (at most the capacity); returns how many were taken (give those back)."""
        n = max(1, min(n, self.capacity))
        with self._lock:
            if not self._waiting and self._in_use + n <= self.capacity:
                self._in_use += n
                return n
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append((n, gate))
        gate.acquire()  # `release` opens it once these n slots are counted as ours
        return n

    def release(self, n: int) -> None:
        with self._lock:
            self._in_use -= n
            while self._waiting and self._in_use + self._waiting[0][0] <= self.capacity:
                wanted, gate = self._waiting.popleft()
                self._in_use += wanted
                gate.release()

    def in_use(self) -> int:
        with self._lock:
            return self._in_use
