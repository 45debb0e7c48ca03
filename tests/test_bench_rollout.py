"""producer/bench/rollout.py: the shadow summary (unit) and a tiny run of both figures (integration).

The smoke run is not timed: it checks that the shadow drains scored what their share says, that the
swap period promoted while scans flowed, and that no scan was lost or expired, on real SeaweedFS, a
private redis-server, the API and real celery workers following registry:production.
"""

from __future__ import annotations

import json

import pytest

from producer.bench import rollout


def test_shadow_summary_is_the_median_per_share_over_no_shadow():
    drains = [{"shadow_share": s, "worker_cpu_ms_per_scan": c, "all_done": True}
              for s, c in ((0.0, 10.0), (0.1, 11.0), (0.0, 12.0), (0.1, 13.0), (0.0, 30.0), (1.0, 22.0))]
    drains.append({"shadow_share": 1.0, "worker_cpu_ms_per_scan": 999.0, "all_done": False})  # not counted
    s = rollout.shadow_summary(drains)
    assert s["median_cpu_ms_per_scan"] == {"0.0": 12.0, "0.1": 12.0, "1.0": 22.0}
    assert s["ratio_to_no_shadow"] == {"0.0": 1.0, "0.1": 1.0, "1.0": 1.833}
    assert rollout.shadow_summary([])["ratio_to_no_shadow"] == {}


def test_periods_of_one_kind_are_pooled_not_averaged():
    def period(lat, cpu, decided):
        return {"seconds": 10, "promotions": 3, "submitted": len(lat), "submit_errors": 0, "completed": len(lat),
                "lost": 0, "expired": 0, "errors": 0, "past_deadline": 0, "decided_by": decided,
                "latencies_s": lat, "worker_cpu_s": cpu}
    p = rollout.pooled([period([0.01] * 99, 1.0, {"a": 99}), period([0.5], 0.5, {"a": 1, "b": 0})])
    assert p["submitted"] == 100 and p["promotions"] == 6 and p["decided_by"] == {"a": 100, "b": 0}
    assert p["p50_ms"] == 10.0 and p["p99_ms"] == 10.0 and p["worker_cpu_ms_per_scan"] == 15.0
    assert rollout.pooled([period([0.5] * 2, 1.0, {})])["p99_ms"] == 500.0


def test_the_cli_reads_its_arguments(monkeypatch):
    seen = {}
    monkeypatch.setattr(rollout, "run", lambda config: seen.setdefault("config", config) and {"results": {}})
    rollout.main(["--scans", "7", "--rounds", "2", "--rate", "3.5", "--cycles", "3", "--only", "swap"])
    c = seen["config"]
    assert (c.scans, c.rounds, c.rate_per_s, c.cycles, c.only) == (7, 2, 3.5, 3, ("swap",))


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_run_shadow_and_swap(tmp_path):
    config = rollout.RolloutBenchConfig(scans=8, shares=(0.0, 1.0), rounds=1, rate_per_s=4.0, warm_up_s=1.0,
                                        steady_s=3.0, swap_s=4.0, promote_every_s=1.0, settle_s=30.0,
                                        unique=2, copies=1)
    result = rollout.run(config, workdir=tmp_path)
    json.dumps(result)  # what --json writes
    res = result["results"]
    none, full = res["shadow_drains"]
    assert none["all_done"] and full["all_done"] and none["completed"] == full["completed"] == 8
    assert none["shadow_scored"] == 0 and full["shadow_scored"] == 8  # share 1.0: every scan scored twice
    assert none["worker_cpu_ms_per_scan"] > 0 and full["worker_cpu_ms_per_scan"] > 0
    assert set(res["shadow"]["ratio_to_no_shadow"]) == {"0.0", "1.0"}
    swap = res["swap"]
    assert swap["swap"]["promotions"] >= 2
    for name in ("steady", "swap"):
        p = swap[name]
        assert p["submitted"] > 0 and p["submit_errors"] == 0, p
        assert p["completed"] == p["submitted"] and p["lost"] == p["expired"] == p["errors"] == 0, p
        assert p["p99_ms"] is not None and set(p["decided_by"]) <= {rollout.VERSION_A, rollout.VERSION_B}, p
    assert swap["p99_swap_over_steady"] is not None and [p["period"] for p in swap["periods"]] == ["steady", "swap"]
    table = rollout.markdown(result)
    assert "| steady 1 |" in table and "| **swap** (pooled) |" in table and "ratio to no shadow" in table
