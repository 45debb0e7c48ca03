"""`python -m tests.chaos.run --scans-per-fault N [--faults a,b] [--json OUT]`: the fault-injection suite.

For each fault: a fresh private stack (harness.ChaosStack), N unique scans with the fault injected once
a third of them were accepted, a settle period, then the checker's counts. Prints progress and a
table, writes every count to OUT as JSON, and exits 1 if any fault lost or conflicted a scan.
`make chaos` runs it with N = 20,000 (docs/RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos import harness
from tests.chaos.faults import FAULTS

COLUMNS = ("fault", "accepted", "lost", "duplicated", "conflicting", "recovery_s", "resume_s", "http_503",
           "gave_up", "http_500", "redelivered", "rewritten", "error_verdicts", "refused_4xx", "ok")


def run_fault(name: str, n: int, root: Path, clients: int = 8, log=print) -> harness.Result:
    fault = FAULTS[name]
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"[{name}] starting stack ({fault.workers} worker(s), appendonly={fault.appendonly})")
    stack = harness.ChaosStack.start(root, workers=fault.workers, appendonly=fault.appendonly)
    try:
        log(f"[{name}] stack up in {time.monotonic() - t0:.1f}s; submitting {n} scans")
        load = harness.Load(stack, n, clients=clients, hostile_every=fault.hostile_every,
                            progress=lambda m: log(f"[{name}] {m}"))
        load.run(fault.run)
        if load.fault_start:
            log(f"[{name}] fault ran {load.fault_end - load.fault_start:.1f}s; load done in "
                f"{load.ended_at - load.started_at:.1f}s")
        # settle: the reconciler's bound (stale + interval) plus room for the backlog
        settle_s = 60 + harness.RECONCILE_STALE_AFTER_S + 4 * harness.RECONCILE_INTERVAL_S + n / 20
        result = harness.check(stack, load, name, settle_timeout_s=settle_s, progress=lambda m: log(f"[{name}] {m}"),
                               expected_exits=int(name in ("worker_sigkill", "worker_sigterm")))
    finally:
        stack.stop()
    log(f"[{name}] lost={result.lost} duplicated={result.duplicated} conflicting={result.conflicting} "
        f"recovery_s={result.recovery_s} ok={result.ok}")
    return result


def table(results: list[dict]) -> str:
    rows = [[str(r.get(c)) for c in COLUMNS] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans-per-fault", type=int, default=500)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from: {', '.join(FAULTS)}")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the stacks' data and logs")
    args = p.parse_args(argv)
    names = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s): {', '.join(unknown)}")
    base = Path(tempfile.mkdtemp(prefix="tenderscan-chaos-"))
    print(f"chaos: {len(names)} fault(s) x {args.scans_per_fault} scans; logs under {base}", flush=True)
    results = []
    for name in names:
        try:
            results.append(run_fault(name, args.scans_per_fault, base / name, args.clients,
                                     log=lambda m: print(m, flush=True)).as_dict())
        except Exception as exc:  # noqa: BLE001 - a fault that could not even run fails the suite
            print(f"[{name}] FAILED TO RUN: {type(exc).__name__}: {exc}", flush=True)
            results.append({"fault": name, "ok": False, "notes": [f"failed to run: {type(exc).__name__}: {exc}"]})
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "python -m tests.chaos.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "scans_per_fault": args.scans_per_fault, "clients": args.clients,
            "reconcile_interval_s": harness.RECONCILE_INTERVAL_S,
            "reconcile_stale_after_s": harness.RECONCILE_STALE_AFTER_S,
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "results": results}, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
