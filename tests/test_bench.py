"""producer/bench: the statistics (unit) and a tiny smoke run of the whole harness (integration).

The smoke run is not a timed test: it checks the JSON's shape and that every contender ran and
finished every scan, on real SeaweedFS, a private redis-server and real celery workers.
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from producer.bench import harness
from producer.bench.contenders import merged_stage_means, poisson_arrivals, process_env
from producer.bench.watch import latency_summary, percentile, rate
from producer.cli import build_parser


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_rate_is_first_to_last_completion():
    assert rate([10.0, 10.5, 11.0]) == pytest.approx(2.0)
    assert rate([1.0]) == 0.0 and rate([]) == 0.0
    assert latency_summary([0.010, 0.020]) == {"p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 20.0}


def test_poisson_arrivals_have_the_offered_rate():
    arrivals = poisson_arrivals(200.0, 50.0, random.Random(1))
    assert 200 * 50 * 0.95 < len(arrivals) < 200 * 50 * 1.05
    assert arrivals == sorted(arrivals) and arrivals[-1] < 50.0


def test_ratios_and_the_half_load_step():
    res = {"tenderscan_drain": {"scans_per_s": 90.0}, "work_limit": {"scans_per_s": 100.0},
           "model_limit": {"scans_per_s": 300.0}, "naive_prefork": {"scans_per_s": 90.0}}
    r = harness.ratios(res)
    assert r["tenderscan_over_work_limit"] == 0.9 and r["tenderscan_over_naive_prefork"] == 1.0
    assert r["tenderscan_over_naive_solo"] is None
    steps = [{"offered_per_s": o, "achieved_per_s": a, "submitted": 10, "completed": c, "p99_ms": 1.0}
             for o, a, c in ((20, 20, 10), (40, 39, 10), (80, 50, 7))]
    summary = harness.open_loop_summary(steps)
    assert summary["sustainable_per_s"] == 39 and summary["half_load_step"]["offered_per_s"] == 20


def test_the_cli_registers_bench():
    args = build_parser().parse_args(["bench", "--scans", "10", "--loads", "0.5,0.7", "--only", "model"])
    assert args.scans == 10 and args.loads == (0.5, 0.7) and args.func.__module__ == "producer.cli.commands.bench"


def test_stage_means_of_several_workers_are_weighted_by_their_counts():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    def scrape(values):
        registry = CollectorRegistry()
        h = Histogram("tenderscan_stage_seconds", "", ["stage"], registry=registry)
        for v in values:
            h.labels(stage="decode").observe(v)
        return generate_latest(registry).decode()

    merged = merged_stage_means([scrape([0.001] * 3), scrape([0.005])])  # 3 scans at 1 ms, 1 at 5 ms
    assert merged == {"decode": {"mean_ms": 2.0, "count": 4}}
    assert merged_stage_means([]) == {}


def test_each_worker_process_gets_its_share_of_the_cores_for_torch():
    assert process_env(2, 2) == {"OMP_NUM_THREADS": "1"} and process_env(1, 2) == {"OMP_NUM_THREADS": "2"}
    assert process_env(4, 2) == {"OMP_NUM_THREADS": "1"}  # never 0
    assert harness.worker_processes(harness.BenchConfig(), 2) == 2  # default: one per core
    assert harness.worker_processes(harness.BenchConfig(worker_processes=1), 2) == 1


def test_the_ceiling_stand_in_runs_the_preprocessing_it_is_given():
    from PIL import Image

    from producer.bench.standins import StandInRunner

    image = Image.new("RGB", (32, 32))
    seen = []
    runner = StandInRunner(4, 0.0, preprocess=lambda im: seen.append(im.size) or "x")
    try:
        assert runner.preprocess(image) == "x" and seen == [(32, 32)]
        assert StandInRunner(4, 0.0).preprocess(image) is None  # --ceiling-preprocess none
        assert runner.infer(runner.preprocess(image)).batch_size == 1
    finally:
        runner.close()


@pytest.mark.integration
def test_smoke_run_every_contender(tmp_path):
    config = harness.BenchConfig(scans=12, solo_scans=6, work_scans=12, ceiling_scans=40, ceiling_multi_scans=40, ceiling_per_message=8,
                                 bulk_per_message=4, unique=2, copies=1, batch_sizes=(1, 4), model_seconds=0.3,
                                 loads=(0.2,), step_seconds=2.0)
    result = harness.run(config, workdir=tmp_path)
    harness.write(result, tmp_path / "bench.json", tmp_path / "bench.png")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) >= {"config", "conditions", "results", "ratios", "open_loop_summary", "wall_s"}
    res = data["results"]
    one_process = {"tenderscan_drain_one_process"} if data["worker_processes"] > 1 else set()
    assert set(res) == {"model_limit", "work_limit", "tenderscan_drain", "tenderscan_drain_bulk", "naive_prefork",
                        "naive_solo", "queue_ceiling_single", "queue_ceiling_multi", "open_loop"} | one_process
    assert res["tenderscan_drain"]["processes"] == data["worker_processes"] == harness.worker_processes(config, os.cpu_count() or 1)
    assert res["queue_ceiling_multi"]["processes"] == 1 and res["queue_ceiling_multi"]["preprocess"] == "checkpoint"
    for name, r in res.items():
        if name == "open_loop":
            assert r and all(s["completed"] == s["submitted"] > 0 and s["p99_ms"] is not None for s in r)
            continue
        assert r["scans_per_s"] > 0, name
        if "completed" in r:
            assert r["completed"] == r["scans"] and r["all_done"], name
    assert set(res["tenderscan_drain"]["stages_ms"]) >= {"queue_wait", "fetch", "decode", "forward", "publish"}
    from workers.core.telemetry import CPU_STAGES

    for name in ("work_limit", "tenderscan_drain", "tenderscan_drain_bulk", "naive_prefork", "queue_ceiling_single"):
        assert res[name]["cpu_ms_per_scan"]["workers"] > 0 and "servers" in res[name]["cpu_ms_per_scan"], name
    drain_cpu = res["tenderscan_drain"]["stage_cpu_ms_per_scan"]
    assert list(drain_cpu) == [*CPU_STAGES, "other"] and drain_cpu["canonical"] > 0 and drain_cpu["fetch"] > 0
    assert all(s["api_cpu_ms_per_accepted"] > 0 and s["worker_cpu_ms_per_scan"] > 0 for s in res["open_loop"])
    assert all(v is not None for k, v in data["ratios"].items() if one_process or not k.startswith("one_process"))
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "| tenderscan_drain |" in harness.markdown_table(data)
    assert "| worker CPU ms per scan |" in harness.markdown_table(data)


def test_stage_breakdown_is_per_scan_in_stage_order_with_the_unclaimed_rest_as_other():
    from producer.bench.contenders import stage_breakdown, stage_cpu_delta
    from workers.core.telemetry import CPU_STAGES

    delta = stage_cpu_delta({"fetch": 1.0, "decode": 2.0}, {"fetch": 3.0, "decode": 6.0, "forward": 1.0})
    assert delta == {"fetch": 2.0, "decode": 4.0, "forward": 1.0}
    out = stage_breakdown(delta, worker_cpu_s=10.0, scans=1000)
    assert list(out) == [*CPU_STAGES, "other"]
    assert out["fetch"] == 2.0 and out["decode"] == 4.0 and out["forward"] == 1.0 and out["checksum"] == 0.0
    assert out["other"] == 3.0
    assert "other" not in stage_breakdown(delta, None, 1000)
    assert stage_breakdown(delta, 10.0, 0) == {}


def test_open_loop_cpu_divides_the_edge_by_accepted_and_the_rest_by_completed():
    from producer.bench.contenders import open_loop_cpu

    out = open_loop_cpu({"api": 2.0, "workers": 9.0, "servers": 1.0}, accepted=1000, completed=900)
    assert out["api_cpu_ms_per_accepted"] == 2.0 and out["api_cpu_bound_per_process_per_s"] == 500.0
    assert out["worker_cpu_ms_per_scan"] == 10.0 and out["server_cpu_ms_per_scan"] == round(1000 / 900, 3)
    assert open_loop_cpu({"api": 0.0}, 0, 0) == {"cpu_s": {"api": 0.0}}


def test_a_held_queue_comes_back_to_a_blocked_consumer(clean_redis):
    import threading

    import redis

    r = redis.Redis.from_url(clean_redis)
    assert harness.hold_queue(r, "q") is None  # nothing to hold
    r.lpush("q", "a", "b")
    held = harness.hold_queue(r, "q")
    assert held and not r.exists("q") and r.llen(held) == 2
    got = []
    consumer = threading.Thread(target=lambda: got.append(redis.Redis.from_url(clean_redis).brpop(["q"], timeout=10)))
    consumer.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    harness.release_queue(r, held, "q")
    consumer.join(10)
    assert got == [(b"q", b"a")] and time.monotonic() - t0 < 2  # woken by the rename, not by its timeout
    assert r.llen("q") == 1


def test_settle_waits_for_the_workers_to_go_quiet():
    from producer.bench.contenders import settle

    class Meter:  # 0.5 s of CPU per sample for three samples, then nothing
        def __init__(self):
            self.samples = iter([0.0, 0.5, 1.0, 1.5, 1.5, 1.5])

        def sample(self):
            v = next(self.samples)
            return {"workers": v, "servers": v / 10}

    last, rates = settle(Meter(), step_s=0.05)
    assert last == {"workers": 1.5, "servers": 0.15} and rates["workers"] == 0.0
    busy = Meter()
    busy.samples = iter([0.1 * i for i in range(100)])
    _, rates = settle(busy, step_s=0.05, timeout_s=0.2)  # never quiet: gives up after the timeout
    assert rates["workers"] > 100
