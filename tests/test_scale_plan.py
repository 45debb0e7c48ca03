import json
import subprocess
import sys

import pytest

from producer.cli.commands.scale_plan import per_worker_from_bench, plan


def test_workers_cover_the_peak_with_headroom():
    p = plan(peak_rate=1000, per_worker_rate=300, latency_target_s=2, headroom=0.7)
    assert p.workers == 5  # 1000 / (300 * 0.7) = 4.76
    assert p.workers * 300 * 0.7 >= 1000 > (p.workers - 1) * 300 * 0.7


def test_keda_thresholds_follow_the_latency_budget():
    p = plan(peak_rate=100, per_worker_rate=400, latency_target_s=1.0, batch_size=32)
    assert p.keda_list_length == 200  # half a second of one worker's throughput
    assert p.keda_backlog_threshold == 200 + 64


def test_redis_load_and_sharding():
    small = plan(peak_rate=100, per_worker_rate=50, latency_target_s=2, ops_per_scan=28, redis_capacity=37000)
    assert small.redis_ops_per_s == 2800 and small.redis_shards == 1
    big = plan(peak_rate=2000, per_worker_rate=900, latency_target_s=2, ops_per_scan=28, redis_capacity=37000)
    assert big.redis_utilization > 1 and big.redis_shards == 4


@pytest.mark.parametrize("bad", [dict(peak_rate=0), dict(per_worker_rate=-1), dict(latency_target_s=0)])
def test_nonsense_inputs_are_refused(bad):
    with pytest.raises(ValueError):
        plan(**({"peak_rate": 10, "per_worker_rate": 5, "latency_target_s": 1} | bad))


def test_per_worker_rate_comes_from_a_bench_json(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"tenderscan": {"drain": {"scans_per_s": 87.5}}}))
    assert per_worker_from_bench(path) == 87.5
    path.write_text("{}")
    with pytest.raises(ValueError):
        per_worker_from_bench(path)


def test_per_worker_from_a_bench_run_is_per_worker_process(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"results": {"tenderscan_drain": {"scans_per_s": 120.0, "processes": 2}}}))
    assert per_worker_from_bench(path) == 60.0  # a node of two processes
    path.write_text(json.dumps({"results": {"tenderscan_drain": {"scans_per_s": 120.0, "processes": 2},
                                            "tenderscan_drain_one_process": {"scans_per_s": 70.0}}}))
    assert per_worker_from_bench(path) == 70.0  # measured alone, preferred
    path.write_text(json.dumps({"results": {"tenderscan_drain": {"scans_per_s": 46.9}}}))  # before processes
    assert per_worker_from_bench(path) == 46.9


def test_the_command_prints_a_plan():
    out = subprocess.run([sys.executable, "-m", "producer", "scale-plan", "--peak-rate", "50", "--per-worker", "45",
                          "--json"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out)["workers"] == 2
