"""`tenderscan scale-plan`: how many workers a peak needs, the KEDA thresholds to set, and the Redis
load it implies.

    workers      = ceil(peak_rate / (per_worker_rate * headroom))
    listLength   = per_worker_rate * latency_target / 2     queued scans per worker that still leave
                                                           half the latency budget for the work itself
    backlog      = listLength + in-flight window (2 x batch) for the Prometheus backlog trigger
    redis ops/s  = peak_rate * ops_per_scan, against one Redis's measured capacity

The defaults for ops per scan and Redis capacity were measured on this project's 2-core machine
(docs/OPERATIONS.md has the commands); pass your own with --redis-ops-per-scan / --redis-capacity.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

# Measured (docs/OPERATIONS.md, "Redis capacity"): 6.1 commands per submit at the edge, 19.7 per scan
# on the worker side (kombu delivery + unacked bookkeeping + state + verdict), 2 for one final poll.
OPS_PER_SCAN = 28.0
# redis-benchmark on the 2-core machine: 52k-68k plain commands/s; the verdict script 37k evals/s.
# The lower figure is the planning capacity of one Redis.
REDIS_CAPACITY = 37_000.0
SHARD_ABOVE = 0.5  # plan a second Redis when one would run above half its measured capacity


@dataclass(frozen=True)
class Plan:
    peak_rate: float
    per_worker_rate: float
    workers: int
    keda_list_length: int
    keda_backlog_threshold: int
    keda_cron_desired_replicas: int
    redis_ops_per_s: float
    redis_utilization: float
    redis_shards: int


def plan(peak_rate: float, per_worker_rate: float, latency_target_s: float, batch_size: int = 32,
         headroom: float = 0.7, ops_per_scan: float = OPS_PER_SCAN, redis_capacity: float = REDIS_CAPACITY) -> Plan:
    if min(peak_rate, per_worker_rate, latency_target_s, headroom, redis_capacity) <= 0:
        raise ValueError("rates, latency target, headroom and capacity must be positive")
    workers = math.ceil(peak_rate / (per_worker_rate * headroom))
    list_length = max(1, int(per_worker_rate * latency_target_s / 2))
    redis_ops = peak_rate * ops_per_scan
    utilization = redis_ops / redis_capacity
    return Plan(peak_rate=peak_rate, per_worker_rate=per_worker_rate, workers=workers,
                keda_list_length=list_length, keda_backlog_threshold=list_length + 2 * batch_size,
                keda_cron_desired_replicas=workers, redis_ops_per_s=round(redis_ops, 1),
                redis_utilization=round(utilization, 3), redis_shards=max(1, math.ceil(utilization / SHARD_ABOVE)))


def per_worker_from_bench(path: Path) -> float:
    """The drain throughput of one tenderscan worker process from `tenderscan bench`'s JSON: its
    one-process drain, else its drain divided by the worker processes it ran (one per core)."""
    data = json.loads(path.read_text())
    results = data.get("results") if isinstance(data.get("results"), dict) else {}
    one = results.get("tenderscan_drain_one_process") or {}
    if isinstance(one.get("scans_per_s"), int | float) and one["scans_per_s"] > 0:
        return float(one["scans_per_s"])
    drain = results.get("tenderscan_drain") or {}
    if isinstance(drain.get("scans_per_s"), int | float) and drain["scans_per_s"] > 0:
        return float(drain["scans_per_s"]) / max(1, int(drain.get("processes") or 1))
    for keys in (("tenderscan", "drain", "scans_per_s"), ("drain", "scans_per_s"), ("tenderscan_drain_scans_per_s",)):
        node = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float) and node > 0:
            return float(node)
    raise ValueError(f"{path}: no drain throughput (tenderscan.drain.scans_per_s) in this benchmark JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale-plan", help="workers, KEDA thresholds and Redis load for a peak",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak-rate", type=float, required=True, help="peak arrivals, scans/s")
    p.add_argument("--latency-target", type=float, default=2.0, help="submit->verdict target, seconds (default 2)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--per-worker", type=float, help="measured drain throughput of one worker, scans/s")
    src.add_argument("--bench", type=Path, help="a `tenderscan bench` JSON to read it from")
    p.add_argument("--batch-size", type=int, default=32, help="TENDERSCAN_MAX_BATCH_SIZE (default 32)")
    p.add_argument("--headroom", type=float, default=0.7, help="target worker utilization (default 0.7)")
    p.add_argument("--redis-ops-per-scan", type=float, default=OPS_PER_SCAN, help=f"Redis commands per scan (default {OPS_PER_SCAN})")
    p.add_argument("--redis-capacity", type=float, default=REDIS_CAPACITY, help="ops/s one Redis sustains")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    per_worker = args.per_worker if args.per_worker else per_worker_from_bench(args.bench)
    result = plan(args.peak_rate, per_worker, args.latency_target, args.batch_size, args.headroom,
                  args.redis_ops_per_scan, args.redis_capacity)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"peak {result.peak_rate:g} scans/s at {result.per_worker_rate:g} scans/s per worker "
          f"(headroom {args.headroom:.0%}): {result.workers} workers\n")
    print("KEDA (infra/k8s/keda-scaledobject.yaml):")
    print(f"  redis trigger       listLength: \"{result.keda_list_length}\"")
    print(f"  prometheus trigger  threshold: \"{result.keda_backlog_threshold}\"   (sum(tenderscan_backlog))")
    print(f"  cron trigger        desiredReplicas: \"{result.keda_cron_desired_replicas}\" over the peak hours")
    print(f"  maxReplicaCount     >= {result.workers}\n")
    print(f"Redis: {result.redis_ops_per_s:,.0f} ops/s = {result.redis_utilization:.1%} of one Redis "
          f"({args.redis_capacity:,.0f} ops/s measured)")
    if result.redis_shards > 1:
        print(f"  -> shard the queue across {result.redis_shards} Redis instances (for example by region): each "
              "region gets its own Redis (broker + verdicts), its own worker Deployment and ScaledObject, and "
              "the API routes a tenant's scans to its region's Redis.")
    else:
        print("  -> one Redis is enough; shard (by region) once a peak would take it above "
              f"{SHARD_ABOVE:.0%} of its capacity.")
    return 0
