"""workers/runtime/batching.py: the pure policy, then the thread that applies it."""

from __future__ import annotations

import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.runtime.batching import Batcher, BatchLengthError, BatchPlan, ScanSlots, plan


# --- plan: the pure policy ----------------------------------------------------------------------
def test_nothing_pending_waits_for_an_arrival():
    assert plan(0, None, now=5.0, max_size=4, max_wait_s=0.01) == BatchPlan(0, math.inf)


def test_full_batch_is_taken_at_once_even_if_young():
    assert plan(4, oldest_enqueued_at=5.0, now=5.0, max_size=4, max_wait_s=1.0) == BatchPlan(4, 0.0)
    assert plan(9, oldest_enqueued_at=5.0, now=5.0, max_size=4, max_wait_s=1.0) == BatchPlan(4, 0.0)


def test_partial_batch_waits_the_rest_of_the_window():
    p = plan(2, oldest_enqueued_at=5.0, now=5.3, max_size=4, max_wait_s=1.0)
    assert p.take == 0 and p.wait_s == pytest.approx(0.7)


def test_partial_batch_flushes_when_the_oldest_has_waited_max_wait():
    assert plan(3, oldest_enqueued_at=5.0, now=6.0, max_size=4, max_wait_s=1.0) == BatchPlan(3, 0.0)
    assert plan(1, oldest_enqueued_at=5.0, now=5.0, max_size=4, max_wait_s=0.0) == BatchPlan(1, 0.0)


def test_a_partial_batch_leaves_at_once_when_nothing_else_is_on_its_way():
    assert plan(2, oldest_enqueued_at=5.0, now=5.0, max_size=4, max_wait_s=1.0, more_coming=False) == BatchPlan(2, 0.0)
    assert plan(0, None, now=5.0, max_size=4, max_wait_s=1.0, more_coming=False) == BatchPlan(0, math.inf)
    assert plan(9, 5.0, now=5.0, max_size=4, max_wait_s=1.0, more_coming=False) == BatchPlan(4, 0.0)


def simulate(arrivals: list[float], max_size: int, max_wait: float) -> list[tuple[float, list[int]]]:
    """Drive `plan` like the batcher thread does, on a virtual clock. Returns (time, item ids) per batch."""
    pending: list[tuple[int, float]] = []
    batches: list[tuple[float, list[int]]] = []
    i, now = 0, 0.0
    while i < len(arrivals) or pending:
        p = plan(len(pending), pending[0][1] if pending else None, now, max_size, max_wait)
        if p.take:
            batches.append((now, [item for item, _ in pending[:p.take]]))
            del pending[:p.take]
            continue
        wake = now + p.wait_s
        if i < len(arrivals) and arrivals[i] <= wake:  # an arrival wakes the thread first
            now = max(now, arrivals[i])
            pending.append((i, arrivals[i]))
            i += 1
        else:
            now = max(wake, math.nextafter(now, math.inf))  # float rounding must not stall the clock
    return batches


@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.floats(0, 0.05, allow_nan=False), max_size=200),
       max_size=st.integers(1, 16), max_wait=st.floats(0, 0.03, allow_nan=False))
def test_policy_takes_every_item_once_in_order_within_limits(gaps, max_size, max_wait):
    arrivals = [sum(gaps[: k + 1]) for k in range(len(gaps))]
    batches = simulate(arrivals, max_size, max_wait)
    taken = [item for _, items in batches for item in items]
    assert taken == list(range(len(arrivals)))  # nothing dropped, duplicated or reordered
    for at, items in batches:
        assert 1 <= len(items) <= max_size
        assert at - arrivals[items[0]] <= max_wait + 1e-9  # nobody waits past the window
        if len(items) < max_size:  # a partial batch only leaves when its window is over
            assert at - arrivals[items[0]] >= max_wait - 1e-9


# --- Batcher: the thread ------------------------------------------------------------------------
class Recorder:
    """run_batch twin: doubles numbers, records batch sizes, fails on marked items."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.sizes.append(len(items))
        time.sleep(self.delay_s)
        if any(item == "poison" for item in items):
            raise ValueError("poison in batch")
        return [ValueError(f"bad {item}") if isinstance(item, str) else item * 2 for item in items]


def test_fills_to_max_size_when_a_backlog_exists():
    rec = Recorder(delay_s=0.05)
    b = Batcher(rec, max_size=4, max_wait_s=5.0)
    futures = [b.submit(i) for i in range(8)]
    assert [f.result(timeout=2) for f in futures] == [i * 2 for i in range(8)]
    b.close()
    assert rec.sizes == [4, 4]  # the 5 s window never mattered: full batches leave at once


def test_flushes_a_partial_batch_at_max_wait():
    rec = Recorder()
    b = Batcher(rec, max_size=64, max_wait_s=0.05)
    t0 = time.monotonic()
    futures = [b.submit(i) for i in range(3)]
    assert [f.result(timeout=2) for f in futures] == [0, 2, 4]
    waited = time.monotonic() - t0
    b.close()
    assert rec.sizes == [3]
    assert 0.04 <= waited < 1.0


def test_flush_when_idle_runs_a_lone_item_at_once_and_waits_only_for_announced_ones():
    rec = Recorder()
    b = Batcher(rec, max_size=64, max_wait_s=5.0, flush_when_idle=True)
    t0 = time.monotonic()
    assert b.submit(1).result(timeout=2) == 2  # nothing announced: the 5 s window does not apply
    assert time.monotonic() - t0 < 1.0
    with b.expecting(2):  # two items on their way: the first waits for the second
        first = b.submit(10)
        time.sleep(0.1)
        assert not first.done()
        second = b.submit(20)
    assert (first.result(timeout=2), second.result(timeout=2)) == (20, 40)
    with b.expecting(2):  # one of the two never comes (rejected before the batcher): no wait past the block
        third = b.submit(30)
    assert third.result(timeout=2) == 60 and time.monotonic() - t0 < 2.0
    b.close()
    assert rec.sizes == [1, 2, 1]


def test_without_flush_when_idle_the_window_alone_decides():
    rec = Recorder()
    b = Batcher(rec, max_size=64, max_wait_s=0.2)
    t0 = time.monotonic()
    with b.expecting(1):
        future = b.submit(1)
    assert future.result(timeout=2) == 2 and time.monotonic() - t0 >= 0.15
    b.close()


def test_an_exception_output_fails_only_its_own_future():
    b = Batcher(Recorder(), max_size=3, max_wait_s=1.0)
    futures = [b.submit(x) for x in (1, "x", 3)]
    assert futures[0].result(timeout=2) == 2 and futures[2].result(timeout=2) == 6
    with pytest.raises(ValueError, match="bad x"):
        futures[1].result(timeout=2)
    b.close()


def test_a_batch_that_raises_is_rerun_one_by_one_so_only_the_culprit_fails():
    rec = Recorder()
    b = Batcher(rec, max_size=3, max_wait_s=1.0)
    futures = [b.submit(x) for x in (1, "poison", 3)]
    assert futures[0].result(timeout=2) == 2 and futures[2].result(timeout=2) == 6
    with pytest.raises(ValueError, match="poison"):
        futures[1].result(timeout=2)
    b.close()
    assert rec.sizes == [3, 1, 1, 1]


def test_wrong_number_of_outputs_is_an_error_not_a_silent_shift():
    b = Batcher(lambda items: [0] * (len(items) + 1), max_size=2, max_wait_s=1.0)
    futures = [b.submit(i) for i in range(2)]
    for f in futures:
        with pytest.raises(BatchLengthError):
            f.result(timeout=2)
    b.close()


def test_close_runs_what_is_pending_and_refuses_new_items():
    rec = Recorder()
    b = Batcher(rec, max_size=64, max_wait_s=60.0)
    futures = [b.submit(i) for i in range(5)]
    b.close()
    assert [f.result(timeout=0) for f in futures] == [0, 2, 4, 6, 8]
    with pytest.raises(RuntimeError):
        b.submit(1)


@settings(max_examples=15, deadline=None)
@given(groups=st.lists(st.tuples(st.integers(1, 12), st.floats(0, 0.004)), min_size=1, max_size=6),
       max_size=st.integers(1, 8))
def test_concurrent_submitters_each_get_exactly_their_own_result(groups, max_size):
    rec = Recorder()
    b = Batcher(rec, max_size=max_size, max_wait_s=0.002)
    results: dict[int, int] = {}
    lock = threading.Lock()

    def client(base: int, count: int, pause: float) -> None:
        for k in range(count):
            value = base + k
            out = b.submit(value).result(timeout=5)
            with lock:
                assert value not in results
                results[value] = out
            time.sleep(pause)

    threads = [threading.Thread(target=client, args=(1000 * g, n, pause)) for g, (n, pause) in enumerate(groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    b.close()
    expected = {1000 * g + k: 2 * (1000 * g + k) for g, (n, _) in enumerate(groups) for k in range(n)}
    assert results == expected
    assert sum(rec.sizes) == len(expected) and max(rec.sizes) <= max_size


# --- ScanSlots: scans of multi-scan messages in flight --------------------------------------------
def test_scan_slots_block_until_enough_are_given_back():
    slots = ScanSlots(8)
    assert slots.acquire(5) == 5
    got = threading.Event()

    def second():
        slots.acquire(4)
        got.set()

    t = threading.Thread(target=second, daemon=True)
    t.start()
    assert not got.wait(0.1)  # 5 + 4 > 8: waits
    slots.release(5)
    assert got.wait(2) and slots.in_use() == 4
    t.join(2)


def test_a_message_larger_than_the_capacity_runs_alone_instead_of_waiting_forever():
    slots = ScanSlots(4)
    taken = slots.acquire(256)
    assert taken == 4 and slots.in_use() == 4
    slots.release(taken)
    assert slots.in_use() == 0 and slots.acquire(0) == 1  # an empty message still counts as one


def test_scan_slots_never_exceed_the_capacity_under_contention():
    slots, peak, lock = ScanSlots(6), [0], threading.Lock()

    def message(n):
        taken = slots.acquire(n)
        with lock:
            peak[0] = max(peak[0], slots.in_use())
        time.sleep(0.002)
        slots.release(taken)

    threads = [threading.Thread(target=message, args=(1 + i % 4,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert peak[0] <= 6 and slots.in_use() == 0


def test_scan_slots_serve_waiters_in_arrival_order():
    """A large message first in line is not overtaken by smaller ones (it would starve)."""
    slots, order = ScanSlots(8), []
    assert slots.acquire(8) == 8

    def message(name, n):
        taken = slots.acquire(n)
        order.append(name)
        time.sleep(0.01)
        slots.release(taken)

    big = threading.Thread(target=message, args=("big", 8))
    big.start()
    while not slots._waiting:
        time.sleep(0.001)
    small = threading.Thread(target=message, args=("small", 1))
    small.start()
    time.sleep(0.05)
    assert order == []  # both wait: the small one queues behind the big one although 1 would fit later
    slots.release(8)
    big.join(2)
    small.join(2)
    assert order == ["big", "small"] and slots.in_use() == 0
