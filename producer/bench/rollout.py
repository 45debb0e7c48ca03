"""Issue #16's two rollout figures, on one private stack (harness.Stack), in one run:

    shadow cost     worker CPU per scan (the processes' own accounting, bench/cpu.py) of a drain of the
                    same scans with SHADOW_SHARE 0, 0.1 and 1.0, alternated `rounds` times. The workers
                    follow registry:production (version A); the shadow alias is version B (the same
                    weights under another version: a second forward pass, a second decision). Target:
                    median CPU at 0.1 <= 1.3 x median CPU at 0.
    swap under load the open loop through the API at a fixed offered rate: a steady period, then a period
                    in which production is promoted A -> B -> A ... every `promote_every_s`. Per period:
                    p50/p99 latency (scheduled arrival -> verdict), scans lost (no verdict after the
                    settle time), scans past their deadline (`expired`, or a verdict later than
                    deadline_s), which versions decided them. Target: p99(swap) <= 1.2 x p99(steady).

    python -m producer.bench.rollout --json docs/bench_rollout.json     (a few minutes on 2 cores)

The offered rate defaults to a quarter of this run's no-shadow drain rate: on this machine the open
loop's sustainable rate was about half the drain rate (docs/bench.json), so a quarter is about half of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from producer.bench import corpus as corpus_mod
from producer.bench.contenders import poisson_arrivals, process_env, submit_paced
from producer.bench.cpu import CpuMeter, per_scan_ms, pids_of
from producer.bench.harness import Stack, conditions
from producer.bench.watch import VerdictWatcher, latency_summary, rate
from workers.core import keys, registry

VERSION_A, VERSION_B = "bench-a", "bench-b"


@dataclass(frozen=True)
class RolloutBenchConfig:
    scans: int = 400  # per shadow drain
    shares: tuple[float, ...] = (0.0, 0.1, 1.0)  # SHADOW_SHARE of each drain, in this order per round
    rounds: int = 3
    processes: int = 0  # worker processes; 0 = one per core, as the bench's drain
    rate_per_s: float = 0.0  # open loop; 0 = a quarter of the median no-shadow drain rate
    warm_up_s: float = 5.0
    steady_s: float = 40.0
    swap_s: float = 40.0
    promote_every_s: float = 3.0
    cycles: int = 1  # steady, swap, steady, swap ...: each kind's figures pooled over its periods
    deadline_s: float = 5.0  # each scan's deadline_s at the API
    settle_s: float = 30.0  # after a period, how long its last verdicts are awaited before a scan counts as lost
    poll_s: float = 1.0  # TENDERSCAN_MODEL_POLL_S of the workers
    unique: int = 16
    copies: int = 4
    seed: int = 2026
    only: tuple[str, ...] = ("shadow", "swap")


def _evaluation() -> dict:
    from workers.core.settings import DEFAULT_MODEL_PATH

    ev = json.loads((Path(DEFAULT_MODEL_PATH).parent / "evaluation.json").read_text())
    ev["summary"] = dict(ev.get("summary") or {}, suite_targets_met=12, suite_targets=12)  # the promotion gate
    return ev


def publish_versions(stack: Stack) -> object:
    """The shipped checkpoint as versions A and B; production -> A, shadow -> B. Returns the models store."""
    from workers.core.settings import DEFAULT_MODEL_PATH
    from workers.core.storage import S3ObjectStore

    models = S3ObjectStore.from_settings(stack.settings, stack.settings.models_bucket)
    models.ensure_bucket()
    for v in (VERSION_A, VERSION_B):
        registry.publish(models, DEFAULT_MODEL_PATH, v, _evaluation())
    registry.promote(models, VERSION_A, "production")
    registry.promote(models, VERSION_B, stack.settings.shadow_alias)
    return models


def _env(config: RolloutBenchConfig, processes: int, cores: int, share: float) -> dict[str, str]:
    return {"TENDERSCAN_MODEL": "registry:production", "TENDERSCAN_MODEL_POLL_S": str(config.poll_s),
            "TENDERSCAN_SHADOW_SHARE": str(share), "TENDERSCAN_CANARY_SHARE": "0",
            **process_env(processes, cores)}


def settle(meter: CpuMeter, quiet_ms_per_s: float, timeout_s: float = 60.0) -> dict[str, float]:
    """The workers' CPU sample once they use less than `quiet_ms_per_s` over a second (start-up done)."""
    deadline = time.monotonic() + timeout_s
    last = meter.sample()
    while True:
        time.sleep(1.0)
        now = meter.sample()
        if 1000 * (now["workers"] - last["workers"]) < quiet_ms_per_s or time.monotonic() > deadline:
            return now
        last = now


def shadow_drain(stack: Stack, watcher: VerdictWatcher, corpus, config: RolloutBenchConfig, share: float,
                 processes: int) -> dict:
    """Start the workers, wait until they are quiet (the shadow loaded), enqueue `scans`, measure their CPU."""
    stack.flush()
    workers = stack.start_worker("workers.app", "threads", processes=processes,
                                 extra_env=_env(config, processes, stack.cores, share))
    try:
        if share > 0:  # the shadow is loaded by the model watcher, after "ready"
            for svc in workers.services:
                svc.wait_for_log(f'"shadow": "{VERSION_B}"', 120)
        meter = CpuMeter({"workers": pids_of(workers.services)})
        before = settle(meter, quiet_ms_per_s=100.0 * processes)
        msgs = corpus_mod.messages(corpus, config.scans)
        for m in msgs:
            stack.verdicts.create_scan(m)
        corpus_mod.enqueue(stack.celery, msgs, keys.TASK_NAME, keys.QUEUE)
        ok = watcher.wait_for([m.scan_id for m in msgs], 300)
        times = watcher.times(m.scan_id for m in msgs)
        cpu_s = meter.since(before)
        shadowed = stack.verdicts.r.xlen(keys.shadow_stream_key(VERSION_B))
    finally:
        workers.stop()
    return {"shadow_share": share, "scans": len(msgs), "completed": len(times), "all_done": ok,
            "shadow_scored": shadowed, "scans_per_s": round(rate(times), 1),
            "worker_cpu_s": cpu_s["workers"], "worker_cpu_ms_per_scan": per_scan_ms(cpu_s, len(times))["workers"]}


def shadow_summary(drains: list[dict]) -> dict:
    """Median worker CPU ms per scan by share, and each share's ratio to share 0."""
    by_share: dict[float, list[float]] = {}
    for d in drains:
        if d.get("all_done"):
            by_share.setdefault(d["shadow_share"], []).append(d["worker_cpu_ms_per_scan"])
    med = {share: round(statistics.median(v), 2) for share, v in sorted(by_share.items())}
    base = med.get(0.0)
    return {"median_cpu_ms_per_scan": {str(k): v for k, v in med.items()},
            "ratio_to_no_shadow": {str(k): round(v / base, 3) for k, v in med.items()} if base else {}}


def _period(http, corpus, rate_per_s: float, seconds: float, deadline_s: float, rng) -> tuple[dict[str, float], int]:
    """Poisson arrivals through the API for `seconds`: (scan id -> scheduled arrival (monotonic), submit errors)."""
    t0 = time.monotonic() + 0.2
    arrivals = [t0 + t for t in poisson_arrivals(rate_per_s, seconds, rng)]
    submitted, errors = submit_paced(http, corpus, arrivals, {"deadline_s": deadline_s})
    return submitted, len(errors)


def period_figures(stack: Stack, watcher: VerdictWatcher, submitted: dict[str, float], errors: int,
                   deadline_s: float, settle_s: float) -> dict:
    """A period's scans once settled: latency from the scheduled arrival, lost, expired, late, which model."""
    from workers.core.schemas import Verdict

    ids = list(submitted)
    watcher.wait_for(ids, settle_s)
    latencies = [watcher.done[i] - submitted[i] for i in ids if i in watcher.done]
    raw = stack.verdicts.r.mget([keys.verdict_key(i) for i in ids]) if ids else []
    verdicts = [Verdict.decode(v) for v in raw if v]
    models: dict[str, int] = {}
    for v in verdicts:
        name = v.model.version if v.model else "none"
        models[name] = models.get(name, 0) + 1
    return {"submitted": len(ids), "submit_errors": errors, "completed": len(latencies),
            "lost": len(ids) - len(verdicts), "expired": sum(v.decision == "expired" for v in verdicts),
            "errors": sum(v.decision == "error" for v in verdicts),
            "past_deadline": sum(lat > deadline_s for lat in latencies), "decided_by": models,
            **latency_summary(latencies), "latencies_s": latencies}


def pooled(periods: list[dict]) -> dict:
    """The periods of one kind as one: counts summed, percentiles over every latency, CPU per scan overall."""
    sums = {k: sum(p[k] for p in periods) for k in ("seconds", "promotions", "submitted", "submit_errors",
                                                     "completed", "lost", "expired", "errors", "past_deadline")}
    decided: dict[str, int] = {}
    for p in periods:
        for version, n in p["decided_by"].items():
            decided[version] = decided.get(version, 0) + n
    cpu_s = sum(p["worker_cpu_s"] for p in periods)
    return dict(sums, decided_by=decided, **latency_summary([lat for p in periods for lat in p["latencies_s"]]),
                worker_cpu_s=round(cpu_s, 3),
                worker_cpu_ms_per_scan=round(1000 * cpu_s / sums["completed"], 2) if sums["completed"] else None)


def promote_loop(models, every_s: float, stop: threading.Event, promotions: list[str]) -> None:
    """Production -> B, A, B ... every `every_s` until `stop`; each promoted version appended to `promotions`."""
    nxt = VERSION_B
    while not stop.wait(every_s):
        registry.promote(models, nxt, "production")
        promotions.append(nxt)
        nxt = VERSION_A if nxt == VERSION_B else VERSION_B


def swap_under_load(stack: Stack, watcher: VerdictWatcher, corpus, models, config: RolloutBenchConfig,
                    rate_per_s: float, processes: int) -> dict:
    import httpx

    stack.flush()
    registry.promote(models, VERSION_A, "production")
    api = stack.start_api(max(1, stack.cores // 4))
    workers = stack.start_worker("workers.app", "threads", processes=processes,
                                 extra_env=_env(config, processes, stack.cores, 0.0))
    rng = random.Random(config.seed)
    out: dict = {"offered_per_s": rate_per_s, "processes": processes, "deadline_s": config.deadline_s,
                 "promote_every_s": config.promote_every_s}
    meter = CpuMeter({"workers": pids_of(workers.services)})
    periods: list[dict] = []
    try:
        http = httpx.Client(base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {stack.api_key}"},
                            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        _period(http, corpus, rate_per_s, config.warm_up_s, config.deadline_s, rng)  # not reported
        time.sleep(2.0)
        for cycle in range(config.cycles):
            for name, seconds in (("steady", config.steady_s), ("swap", config.swap_s)):
                stop, promotions = threading.Event(), []
                promoter = threading.Thread(target=promote_loop, args=(models, config.promote_every_s, stop,
                                                                       promotions), daemon=True) if name == "swap" else None
                before = meter.sample()
                if promoter:
                    promoter.start()
                submitted, errors = _period(http, corpus, rate_per_s, seconds, config.deadline_s, rng)
                stop.set()
                if promoter:
                    promoter.join()
                figures = period_figures(stack, watcher, submitted, errors, config.deadline_s, config.settle_s)
                cpu_s = meter.since(before)["workers"]
                periods.append(dict(figures, period=name, cycle=cycle + 1, seconds=seconds, promotions=len(promotions),
                                    worker_cpu_s=cpu_s, worker_cpu_ms_per_scan=round(1000 * cpu_s / figures["completed"], 2)
                                    if figures["completed"] else None))
                time.sleep(2.0)
        http.close()
    finally:
        workers.stop()
        api.stop()
    out["periods"] = [{k: v for k, v in p.items() if k != "latencies_s"} for p in periods]
    for name in ("steady", "swap"):
        out[name] = pooled([p for p in periods if p["period"] == name])
    steady, swap = out["steady"]["p99_ms"], out["swap"]["p99_ms"]
    out["p99_swap_over_steady"] = round(swap / steady, 3) if steady and swap else None
    return out


def run(config: RolloutBenchConfig, workdir: Path | None = None) -> dict:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    t0 = time.monotonic()
    out: dict = {"config": asdict(config), "conditions": conditions(), "results": {}}
    corpus = corpus_mod.make_corpus(config.unique, config.seed)
    root = Path(tempfile.mkdtemp(prefix="tenderscan-bench-rollout-", dir=workdir))
    stack = Stack.start(root, "INFO")
    watcher = None
    processes = config.processes or stack.cores
    try:
        from workers.core.storage import S3ObjectStore

        corpus_mod.upload_images(corpus, S3ObjectStore.from_settings(stack.settings), config.copies)
        models = publish_versions(stack)
        watcher = VerdictWatcher(stack.settings.redis_url)
        res = out["results"]
        rate_per_s = config.rate_per_s
        if "shadow" in config.only:
            drains = []
            for rnd in range(config.rounds):
                for share in config.shares:
                    print(f"rollout bench +{time.monotonic() - t0:6.1f}s  round {rnd + 1}, shadow share {share}",
                          flush=True)
                    drains.append(dict(shadow_drain(stack, watcher, corpus, config, share, processes), round=rnd + 1))
            res["shadow_drains"] = drains
            res["shadow"] = shadow_summary(drains)
            base_rates = [d["scans_per_s"] for d in drains if d["shadow_share"] == 0 and d["all_done"]]
            if not rate_per_s and base_rates:
                rate_per_s = round(statistics.median(base_rates) / 4, 1)
        if "swap" in config.only:
            rate_per_s = rate_per_s or 20.0
            print(f"rollout bench +{time.monotonic() - t0:6.1f}s  swap under load at {rate_per_s}/s", flush=True)
            res["swap"] = swap_under_load(stack, watcher, corpus, models, config, rate_per_s, processes)
    finally:
        if watcher is not None:
            watcher.close()
        stack.stop()
        shutil.rmtree(root / "s3", ignore_errors=True)
    load = os.getloadavg()
    out["conditions"]["loadavg_at_end"] = [round(v, 2) for v in load]
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["logs"] = str(root / "logs")
    return out


def markdown(result: dict) -> str:
    res, lines = result["results"], []
    if "shadow_drains" in res:
        lines += ["| round | shadow share | scans | shadow scored | scans/s | worker CPU ms/scan |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {d['round']} | {d['shadow_share']} | {d['completed']} | {d['shadow_scored']} | "
                  f"{d['scans_per_s']} | {d['worker_cpu_ms_per_scan']} |" for d in res["shadow_drains"]]
        s = res["shadow"]
        lines += ["", "| shadow share | median worker CPU ms/scan | ratio to no shadow |", "|---:|---:|---:|"]
        lines += [f"| {k} | {v} | {s['ratio_to_no_shadow'].get(k)} |" for k, v in s["median_cpu_ms_per_scan"].items()]
        lines.append("")
    if "swap" in res:
        sw = res["swap"]
        lines += [f"Offered {sw['offered_per_s']}/s, deadline {sw['deadline_s']} s, "
                  f"p99(swap)/p99(steady) = {sw['p99_swap_over_steady']}", "",
                  "| period | s | promotions | submitted | completed | lost | expired | past deadline | "
                  "p50 ms | p99 ms | worker CPU ms/scan | decided by |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        rows = [(f"{p['period']} {p['cycle']}", p) for p in sw.get("periods", [])] + [
            (f"**{name}** (pooled)", sw[name]) for name in ("steady", "swap")]
        for name, p in rows:
            lines.append(f"| {name} | {p['seconds']} | {p['promotions']} | {p['submitted']} | {p['completed']} | "
                         f"{p['lost']} | {p['expired']} | {p['past_deadline']} | {p['p50_ms']} | {p['p99_ms']} | "
                         f"{p.get('worker_cpu_ms_per_scan', '')} | {p['decided_by']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    d = RolloutBenchConfig()
    p = argparse.ArgumentParser(prog="python -m producer.bench.rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("--scans", type=int, default=d.scans)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--rate", type=float, default=d.rate_per_s, help="open loop scans/s (0: a quarter of the drain)")
    p.add_argument("--steady-s", type=float, default=d.steady_s)
    p.add_argument("--swap-s", type=float, default=d.swap_s)
    p.add_argument("--cycles", type=int, default=d.cycles, help="steady+swap period pairs, alternated")
    p.add_argument("--promote-every-s", type=float, default=d.promote_every_s)
    p.add_argument("--only", default=",".join(d.only), help="shadow,swap")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    config = RolloutBenchConfig(scans=a.scans, rounds=a.rounds, rate_per_s=a.rate, steady_s=a.steady_s,
                                swap_s=a.swap_s, cycles=a.cycles, promote_every_s=a.promote_every_s,
                                only=tuple(x for x in a.only.split(",") if x))
    result = run(config)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
