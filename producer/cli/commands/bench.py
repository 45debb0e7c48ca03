"""`tenderscan bench`: the throughput benchmark (producer/bench/, docs/PERFORMANCE.md).

Starts its own SeaweedFS and redis-server, runs every contender on the same scans, writes JSON and
a PNG and prints a markdown table. The default run is bounded (a few minutes on 2 cores); scale it
with --scans, --ceiling-scans, --step-seconds. `--only` picks contenders (smoke tests).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark tenderscan against the model, the work and a naive worker",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans", type=int, default=1000, help="scans per drain run (default 1000)")
    p.add_argument("--solo-scans", type=int, default=400, help="scans for the naive -P solo drain")
    p.add_argument("--work-scans", type=int, default=800, help="scans for the in-process work limit")
    p.add_argument("--ceiling-scans", type=int, default=6000, help="scans, queue ceiling with one scan per message")
    p.add_argument("--ceiling-multi-scans", type=int, default=24000,
                   help="scans, queue ceiling with --ceiling-per-message scans per message")
    p.add_argument("--ceiling-per-message", type=int, default=64, help="scans per message, raised ceiling run")
    p.add_argument("--bulk-per-message", type=int, default=16, help="scans per message, bulk drain run")
    p.add_argument("--unique", type=int, default=32, help="distinct rendered scans")
    p.add_argument("--copies", type=int, default=8, help="S3 copies of each distinct scan")
    p.add_argument("--seed", type=int, default=2026, help="corpus seed (default 2026)")
    p.add_argument("--batch-sizes", type=_ints, default=(1, 8, 16, 32, 64), help="model limit: batch sizes")
    p.add_argument("--model-seconds", type=float, default=2.0, help="model limit: seconds per batch size")
    p.add_argument("--loads", type=_floats, default=(0.2, 0.35, 0.5, 0.7, 0.9),
                   help="open loop: offered loads as fractions of the tenderscan drain rate")
    p.add_argument("--step-seconds", type=float, default=12.0, help="open loop: seconds per offered load")
    p.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(
        ("model", "work", "drain", "drain_one", "drain_bulk", "naive_prefork", "naive_solo", "ceiling", "open_loop")))
    p.add_argument("--worker-processes", type=int, default=0,
                   help="tenderscan worker processes in the drain and open-loop runs (default: one per core; "
                        "the drain also runs with one when this is more than one)")
    p.add_argument("--api-workers", type=int, default=0,
                   help="open loop: uvicorn processes of the API (default 0 = one per 4 cores, at least 1)")
    p.add_argument("--ceiling-preprocess", choices=("checkpoint", "none"), default="checkpoint",
                   help="queue ceiling: run the checkpoint's per-scan preprocessing on the stand-in image "
                        "(default), or none (queue and plumbing alone)")
    p.add_argument("--log-level", default="INFO", help="workers' log level (INFO = as deployed)")
    p.add_argument("--json", type=Path, default=Path("docs/bench.json"), help="JSON output, rewritten after each contender (default docs/bench.json)")
    p.add_argument("--plot", type=lambda v: Path(v) if v else None, default=Path("docs/bench.png"),
                   help="PNG output (default docs/bench.png; '' for none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from producer.bench import harness

    only = tuple(v.strip() for v in args.only.split(",") if v.strip()) or harness.CONTENDERS
    unknown = set(only) - set(harness.CONTENDERS)
    if unknown:
        raise SystemExit(f"tenderscan bench: unknown contenders {sorted(unknown)}")
    config = harness.BenchConfig(
        scans=args.scans, solo_scans=args.solo_scans, work_scans=args.work_scans,
        ceiling_scans=args.ceiling_scans, ceiling_multi_scans=args.ceiling_multi_scans,
        ceiling_per_message=args.ceiling_per_message, bulk_per_message=args.bulk_per_message,
        unique=args.unique, copies=args.copies, seed=args.seed, batch_sizes=args.batch_sizes,
        model_seconds=args.model_seconds, loads=args.loads, step_seconds=args.step_seconds, only=only,
        log_level=args.log_level.upper(), worker_processes=args.worker_processes, api_workers=args.api_workers,
        ceiling_preprocess=args.ceiling_preprocess == "checkpoint")
    result = harness.run(config, partial_json=args.json)
    harness.write(result, args.json, args.plot)
    print(harness.markdown_table(result))
    return 0
