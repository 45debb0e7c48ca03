"""producer/bench/webhooks.py at a tiny size: real redis-server, `tenderscan webhook deliver` and the
bench's receiver. Every event arrives verified and its lag is measured; with the receiver down at the
start, every event still arrives, after it comes up."""

from __future__ import annotations

import pytest

from producer.bench import webhooks as bench

pytestmark = pytest.mark.integration


def test_a_healthy_receiver_gets_every_event_and_the_lag_is_measured(tmp_path):
    report = bench.run(rate=20, seconds=1, drain_s=30, poll_s=0.05, work=tmp_path)
    assert (report["emitted"], report["delivered"], report["missing"], report["unverified"]) == (20, 20, 0, 0)
    lag = report["lag_ms"]
    assert 0 < lag["p50"] <= lag["p99"] <= lag["max"] < 30_000


def test_after_an_outage_every_event_arrives_once_the_receiver_is_back(tmp_path):
    report = bench.run(rate=20, seconds=1, outage_s=2, drain_s=60, poll_s=0.05, backoff_base_s=0.2, work=tmp_path)
    assert (report["emitted"], report["missing"]) == (20, 0)
    assert report["lag_ms"]["p50"] >= 1000  # none could arrive before the receiver came up (2 s in)
    assert report["last_arrival_after_receiver_up_s"] >= 0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (bench.percentile(values, 50), bench.percentile(values, 99), bench.percentile(values, 100)) == (50, 99, 100)
    assert bench.percentile([7.0], 99) == 7.0
