"""Exponential backoff with full jitter, bounded by a cap and a retry window."""

from workers.webhooks.backoff import Backoff


def test_ceilings_double_up_to_the_cap():
    b = Backoff(base_s=5, cap_s=3600, window_s=86400)
    assert [b.ceiling(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert b.ceiling(11) == 3600 and b.ceiling(10_000) == 3600  # no overflow for absurd attempt numbers


def test_full_jitter_spans_zero_to_the_ceiling():
    b = Backoff(base_s=5, cap_s=3600)
    assert b.delay(3, rand=lambda: 0.0) == 0.0
    assert b.delay(3, rand=lambda: 0.999) < 20 and b.delay(3, rand=lambda: 0.5) == 10


def test_retries_stop_once_the_window_is_spent():
    b = Backoff(base_s=1, cap_s=100, window_s=1000)
    assert b.next_due(5, first_at=0, now=500, rand=lambda: 1.0) == 516
    assert b.next_due(20, first_at=0, now=950, rand=lambda: 0.2) == 970
    assert b.next_due(20, first_at=0, now=950, rand=lambda: 0.9) is None  # 1040 > 1000


def test_the_default_schedule_gives_about_24_hours_of_tries():
    b = Backoff()  # 5 s base, 1 h cap, 24 h window; the expected delay is half the ceiling
    t, attempt = 0.0, 1
    while (due := b.next_due(attempt, 0.0, t, rand=lambda: 0.5)) is not None:
        t, attempt = due, attempt + 1
    assert 40 <= attempt <= 60 and t > 23 * 3600
