"""workers/runtime/retrying.py: outages are bounded by time, a scan's own failures by max_attempts.

The pure decision (`why_give_up`, `RetryPolicy.backoff_s`) without services; `settle` on the real
Redis and the in-memory S3 twin, driven the way the task drives it, delivery after delivery.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.workers.runtime.test_pipeline import env, jpeg, scan  # noqa: F401 - `env` is a fixture
from workers.core.clock import format_time, parse_time
from workers.core.enums import Reason
from workers.core.errors import StorageError, StorageUnavailable, StoreUnavailable
from workers.core.settings import Settings
from workers.runtime import pipeline
from workers.runtime.context import now
from workers.runtime.publish import audit_key
from workers.runtime.retrying import RetryPolicy, settle, why_give_up
from workers.runtime.runner import InferenceTimeout

POLICY = RetryPolicy(max_attempts=3, window_s=900, cap_s=30)
T0 = parse_time("2026-03-01T12:00:00.000000Z")


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for retries in range(40):
        base = min(POLICY.cap_s, POLICY.base_s * 2 ** retries)
        for _ in range(20):
            assert 0.5 * base <= POLICY.backoff_s(retries, rng) <= 1.5 * base
    assert len({round(POLICY.backoff_s(3, rng), 6) for _ in range(20)}) > 1  # jittered, not lockstep
    assert POLICY.backoff_s(10_000, rng) <= 1.5 * POLICY.cap_s  # no overflow on a long outage


def test_the_policy_comes_from_settings_and_its_pauses_fire_before_the_reconciler():
    s = Settings()
    policy = RetryPolicy.from_settings(s)
    assert (policy.max_attempts, policy.window_s) == (s.max_attempts, s.transient_retry_window_s)
    assert 1.5 * policy.cap_s < s.reconcile_stale_after_s
    # the backstop leaves room for the whole window at the shortest pauses, and for the poison cap
    assert policy.max_retries * 0.5 * policy.cap_s > policy.window_s + policy.max_attempts


@pytest.mark.parametrize("exc", [StorageUnavailable("S3 unreachable"), StoreUnavailable("Redis unavailable")])
def test_an_outage_is_retried_for_the_window_then_ends_infrastructure_unavailable(exc):
    state = {"attempts": "0", "transient_since": "2026-03-01T12:00:00.000000Z"}
    assert why_give_up(exc, state, POLICY, 40, T0 + timedelta(seconds=899)) is None
    assert why_give_up(exc, {"attempts": "99"}, POLICY, 1, T0) is None  # attempts are not an outage's budget
    reason, detail = why_give_up(exc, state, POLICY, 41, T0 + timedelta(seconds=900))
    assert reason == Reason.INFRASTRUCTURE_UNAVAILABLE
    assert "900 s" in detail and type(exc).__name__ in detail


@pytest.mark.parametrize("exc", [RuntimeError("bug"), StorageError("S3 AccessDenied"), InferenceTimeout("hang")])
def test_a_scans_own_failures_end_internal_error_at_max_attempts(exc):
    assert why_give_up(exc, {"attempts": "2"}, POLICY, 1, T0) is None
    assert why_give_up(exc, {"attempts": "3"}, POLICY, 2, T0) == (Reason.INTERNAL_ERROR,
                                                                  f"{type(exc).__name__} after 3 attempts")
    assert why_give_up(exc, {"attempts": "3", "transient_since": "2026-01-01T00:00:00.000000Z"}, POLICY, 2,
                       T0)[0] == Reason.INTERNAL_ERROR


def test_the_backstop_ends_a_scan_whose_state_redis_lost():
    assert why_give_up(RuntimeError("x"), None, POLICY, POLICY.max_retries - 1, T0) is None
    reason, detail = why_give_up(StorageUnavailable("x"), None, POLICY, POLICY.max_retries, T0)
    assert reason == Reason.INTERNAL_ERROR and "deliveries of one message" in detail


def test_settle_keeps_an_outage_going_past_the_old_cap_then_ends_it_after_the_window(env):  # noqa: F811
    """The task's loop, by hand: deliveries in an outage settle to "retry" long past max_attempts;
    once the window has passed since the first one, the scan gets its distinct `error` verdict."""
    ctx = replace(env, policy=RetryPolicy(max_attempts=2, window_s=900, cap_s=30))
    msg = scan(ctx, jpeg(240))
    ctx.objects.down = True
    for retries in range(10):
        with pytest.raises(StorageUnavailable) as caught:
            pipeline.process_scan(msg, ctx)
        assert settle([(msg, caught.value)], ctx, retries) == []
    later = replace(ctx, clock=lambda: now() + timedelta(seconds=901))
    with pytest.raises(StorageUnavailable) as caught:
        pipeline.process_scan(msg, later)
    assert settle([(msg, caught.value)], later, 10) == []  # its verdict is in Redis, not yet in S3
    ctx.objects.down = False
    assert settle([(msg, caught.value)], later, 11) == [msg]
    v = ctx.verdicts.get_verdict(msg.scan_id)
    assert (v.decision, v.reason, v.attempt) == ("error", "infrastructure_unavailable", 1)
    assert ctx.objects.get(audit_key(v)).data == v.encode().encode()


def test_settle_ends_a_poison_scan_at_max_attempts_and_leaves_its_neighbours_alone(env):  # noqa: F811
    ctx = replace(env, policy=RetryPolicy(max_attempts=2, window_s=900, cap_s=30))
    poison = replace(scan(ctx, jpeg(240)), deadline="not a time")
    healthy = scan(ctx, jpeg(10))
    ctx.verdicts.start_scans([healthy.scan_id])
    ctx.verdicts.refund_attempt(healthy.scan_id, format_time(ctx.clock()))
    outcomes = []
    for retries in range(2):
        with pytest.raises(ValueError) as caught:
            pipeline.process_scan(poison, ctx)
        outcomes.append(settle([(poison, caught.value), (healthy, StorageUnavailable("S3 down"))], ctx, retries))
    assert outcomes == [[], [poison]]  # the second counted delivery reaches the cap
    v = ctx.verdicts.get_verdict(poison.scan_id)
    assert (v.decision, v.reason, v.attempt) == ("error", "internal_error", 2)
    assert v.detail == "ValueError after 2 attempts"
    assert ctx.verdicts.get_verdict(healthy.scan_id) is None


def test_settle_defers_to_a_retry_when_redis_cannot_tell(env):  # noqa: F811
    msg = scan(env, jpeg(240))

    class Down(type(env.verdicts)):
        def get_scans(self, scan_ids):
            raise StoreUnavailable("Redis unavailable (TimeoutError)")

    ctx = replace(env, verdicts=Down(env.verdicts.r), policy=POLICY)
    with pytest.raises(StoreUnavailable):
        settle([(msg, StoreUnavailable("Redis unavailable"))], ctx, 0)
