"""`make demo`: the whole job on one machine, with embedded defaults.

Starts a DevStack (SeaweedFS and a private redis-server on free loopback ports: no Redis already
running here is touched), the API and one worker as plain processes; generates genuine and
counterfeit scans with the bill generator; submits them over HTTP as several POS terminals would;
polls every verdict; prints a table and a summary; stops everything it started and removes its
working directory (kept, and named, when something failed). Exits non-zero if any scan lacks a
verdict or anything else failed.

    python -m producer.dev.demo [--count 48] [--terminals 6] [--seed 2026] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from producer.dev.services import tenderscan_command
from producer.dev.stack import DevStack

DEMO_TENANT, DEMO_KEY = "acme", "demo-key-acme"  # the demo's own key; never use it outside the demo


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m producer.dev.demo", description=__doc__.split("\n\n")[1])
    p.add_argument("--count", type=int, default=48, help="scans to submit (default 48)")
    p.add_argument("--terminals", type=int, default=6, help="POS terminals submitting in parallel (default 6)")
    p.add_argument("--seed", type=int, default=2026, help="generator seed (default 2026)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where data and logs go, kept afterwards (default: a temp dir, removed unless the demo failed)")
    return p


def start_stack(workdir: Path) -> DevStack:
    """SeaweedFS, a private Redis, the API and one worker, ready."""
    stack = DevStack.start(workdir, api_keys={DEMO_TENANT: DEMO_KEY}, extra={"TENDERSCAN_LOG_LEVEL": "INFO"})
    try:
        stack.start_api()
        stack.start_worker("worker", command=[*tenderscan_command(), "worker"], wait=True)  # model loaded, consuming
    except BaseException:
        stack.stop()
        raise
    return stack


def run_scans(api_url: str, count: int, terminals: int, seed: int) -> list[dict]:
    from models.synth import make_scans
    from producer.client import TenderscanClient

    print(f"generating {count} synthetic scans (seed {seed}) ...", flush=True)
    scans = make_scans(count, seed=seed, counterfeit_ratio=0.5, capture="default")
    client = TenderscanClient(api_url, DEMO_KEY, timeout=40)
    deadline = time.monotonic() + 60
    while not client.ready():
        if time.monotonic() > deadline:
            raise RuntimeError("the API never became ready")
        time.sleep(0.5)

    def one(i: int) -> dict:
        data, truth = scans[i]
        terminal = i % terminals
        t0 = time.perf_counter()
        accepted = client.submit(data, store_id=f"store-{terminal // 3 + 1}", terminal_id=f"pos-{terminal + 1}")
        result = client.wait(accepted["scan_id"], timeout=120)
        return {"i": i, "truth": truth, "scan_id": accepted["scan_id"], "result": result,
                "latency_ms": (time.perf_counter() - t0) * 1000}

    print(f"submitting through the HTTP API from {terminals} terminals ...", flush=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(terminals) as pool:
        rows = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - t0
    for row in rows:
        row["elapsed_s"] = elapsed
    return rows


def report(rows: list[dict]) -> bool:
    """Print the table and the summary; True when every scan has a verdict."""
    print(f"\n{'scan':10} {'truth':12} {'decision':12} {'conf':>5} {'signs':36} {'ms':>6}")
    failures, correct, decided = 0, 0, 0
    for row in rows:
        verdict = (row["result"] or {}).get("verdict")
        truth = row["truth"]["label"]
        if not verdict:
            failures += 1
            print(f"{row['scan_id'][:8]:10} {truth:12} {'NO VERDICT':12}")
            continue
        decision = verdict["decision"]
        if decision in ("genuine", "counterfeit"):
            decided += 1
            correct += decision == truth
        signs = ",".join(verdict.get("signs_detected") or []) or "-"
        conf = verdict.get("confidence")
        print(f"{row['scan_id'][:8]:10} {truth:12} {decision:12} {conf if conf is None else f'{conf:.2f}':>5} "
              f"{signs[:36]:36} {row['latency_ms']:6.0f}")
    latencies = sorted(r["latency_ms"] for r in rows)
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    elapsed = rows[0]["elapsed_s"] if rows else 0
    print(f"\nscans: {len(rows)}   verdicts: {len(rows) - failures}   "
          f"auto-decided: {decided}   review: {sum(1 for r in rows if ((r['result'] or {}).get('verdict') or {}).get('decision') == 'review')}")
    if decided:
        print(f"accuracy on auto-decided scans: {correct / decided:.1%}")
    print(f"submit->verdict latency: p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms   "
          f"throughput: {len(rows) / elapsed:.1f} scans/s")
    return failures == 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tenderscan-demo-"))
    kept = "kept" if args.workdir else "removed at the end unless the demo fails"
    print(f"demo workdir: {workdir} (logs in {workdir / 'logs'}; {kept})", flush=True)
    stack = None
    ok = False
    try:
        stack = start_stack(workdir)
        print(f"API at {stack.api_url}/docs; one worker; SeaweedFS at {stack.s3.extra['endpoint']}; "
              f"Redis: a private redis-server at {stack.redis.extra['url']} (DB 0), stopped at the end", flush=True)
        rows = run_scans(stack.api_url, args.count, args.terminals, args.seed)
        ok = report(rows)
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure and exits non-zero
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        services = [*stack.workers, *([stack.api] if stack.api else [])] if stack else []
        for svc in services:
            print(f"--- {svc.name} log tail ---\n{svc.log_tail(15)}", file=sys.stderr)
    finally:
        if stack is not None:
            stack.stop()
    if args.workdir is None:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"demo workdir kept for its logs: {workdir}", file=sys.stderr)
    print("demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
