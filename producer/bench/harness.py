"""One benchmark run: private services, every contender on the same scans, ratios, JSON and a plot.

    services     SeaweedFS (`weed mini`) and a private redis-server: a producer.dev DevStack on free
                 ports, so the run never touches a Redis already running here
    contenders   model limit -> work limit -> tenderscan drain (single, bulk messages; one worker
                 process per core, and once with one) -> naive prefork, naive solo -> queue ceiling
                 (one process; one scan per message, K per message) -> open loop
    report       JSON (BenchConfig + results + ratios + conditions) and a PNG; `markdown_table` for
                 docs/PERFORMANCE.md

Every worker is a real `celery worker` subprocess, started after its queue is filled; throughput is
first-to-last verdict (contenders.py).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from producer.bench import contenders
from producer.bench import corpus as corpus_mod
from producer.bench.watch import VerdictWatcher
from producer.dev import services
from producer.dev.services import Service
from producer.dev.stack import DevStack
from workers.core import clock, keys
from workers.core.settings import Settings

ACCESS, SECRET, API_KEY = "bench", "bench-secret-key", "bench-api-key"
CONTENDERS = ("model", "work", "drain", "drain_one", "drain_bulk", "naive_prefork", "naive_solo", "ceiling",
              "open_loop")


@dataclass(frozen=True)
class BenchConfig:
    scans: int = 1000  # drain runs: tenderscan, bulk, naive prefork
    solo_scans: int = 400  # the naive -P solo drain (it is the slowest)
    work_scans: int = 800  # the in-process work limit
    ceiling_scans: int = 6000  # the queue-ceiling run with one scan per message (~20 s here)
    # the run with `ceiling_per_message` per message: at ~2,000 scans/s, 6,000 scans were a 3 s run in
    # which the 64 task threads' first tasks and the last messages' drain weighed; 24,000 is ~12 s
    ceiling_multi_scans: int = 24000
    ceiling_per_message: int = 64  # scans per message in the raised ceiling run
    bulk_per_message: int = 16  # the bulk drain (TENDERSCAN_SCANS_PER_MESSAGE's default)
    unique: int = 32  # distinct rendered scans (models.synth is slow); stored `copies` times each
    copies: int = 8
    seed: int = 2026
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64)
    model_seconds: float = 2.0  # per batch size
    loads: tuple[float, ...] = (0.2, 0.35, 0.5, 0.7, 0.9)  # open loop: fractions of the tenderscan drain rate
    step_seconds: float = 12.0  # per offered load
    only: tuple[str, ...] = CONTENDERS
    log_level: str = "INFO"  # workers' log level (INFO = as deployed: one scan_done event per scan)
    # tenderscan worker processes in the drain and open-loop runs, as a CPU node runs them: one per core
    # (each with its own batcher), torch threads = cores // processes each. 0 = the machine's cores.
    # The queue ceiling is always one process (its target is per process); with more than one, the
    # drain also runs once with one process (`drain_one`: tenderscan_drain_one_process).
    worker_processes: int = 0
    ceiling_preprocess: bool = True  # the ceiling worker runs the checkpoint's per-scan preprocessing
    api_workers: int = 0  # open loop: uvicorn processes of `tenderscan api`; 0 = one per 4 cores, at least 1


@dataclass
class Stack:
    """The services (a DevStack) and the worker/API subprocesses of one run."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    local: DevStack
    api_url: str = ""
    api_key: str = API_KEY
    metrics_ports: list[int] = field(default_factory=list)  # of the workers started last
    cores: int = os.cpu_count() or 1

    @classmethod
    def start(cls, root: Path, log_level: str) -> Stack:
        # the environment's TENDERSCAN_* settings (batch size, concurrency, ...) are what the workers run
        local = DevStack.start(root, scans_bucket="bench-scans", models_bucket="bench-models", access_key=ACCESS,
                                 secret_key=SECRET, api_keys={corpus_mod.TENANT: API_KEY}, inherit=True, extra={
                                     "TENDERSCAN_RECONCILE_INTERVAL_S": "0",
                                     # the benchmark measures the pipeline, not the per-tenant limiter: no limits
                                     "TENDERSCAN_TENANT_RATE_PER_S": "0", "TENDERSCAN_TENANT_MAX_IN_FLIGHT": "0",
                                     "TENDERSCAN_LOG_LEVEL": log_level, "TENDERSCAN_LOG_JSON": "true"})
        return cls(local.settings, local.env, local.logs, local)

    # --- clients -----------------------------------------------------------------------------------
    @property
    def verdicts(self):
        if not hasattr(self, "_verdicts"):
            from workers.core.verdict_store import VerdictStore

            self._verdicts = VerdictStore.from_settings(self.settings)
        return self._verdicts

    @property
    def celery(self):
        if not hasattr(self, "_celery"):
            from workers.core.celery_app import make_celery

            self._celery = make_celery(self.settings)
        return self._celery

    def flush(self) -> None:
        self.verdicts.r.flushdb()

    # --- processes ---------------------------------------------------------------------------------
    def start_worker(self, app_module: str, pool: str, concurrency: int | None = None,
                     queue: str = keys.QUEUE, processes: int = 1,
                     extra_env: dict[str, str] | None = None) -> WorkerGroup:
        """`processes` worker processes (each its own Celery worker, batcher and /metrics port), ready."""
        concurrency = concurrency or (1 if pool == "solo" else self.settings.effective_concurrency)
        self.metrics_ports = [services.free_port() for _ in range(processes)]
        group = WorkerGroup([])
        try:
            for port in self.metrics_ports:
                cmd = [sys.executable, "-m", "celery", "-A", app_module, "worker", "-P", pool, "-c", str(concurrency),
                       "-Q", queue, "-n", f"bench-{pool}-{port}@%h", "--loglevel", self.settings.log_level,
                       "--without-gossip", "--without-mingle", "--without-heartbeat"]
                env = dict(self.env, **(extra_env or {}), TENDERSCAN_METRICS_PORT=str(port))
                group.services.append(services.spawn(f"worker-{app_module.rsplit('.', 1)[-1]}-{pool}-{port}", cmd,
                                                     self.logs, env=env))
            for svc in group.services:
                contenders.wait_ready(svc)
        except Exception:
            group.stop()
            raise
        return group

    def start_api(self, workers: int = 1) -> Service:
        import httpx

        svc = self.local.start_api(workers=workers)
        self.api_url = self.local.api_url
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api_url + "/readyz", timeout=1).status_code == 200:
                    return svc
            except httpx.HTTPError:
                pass
            if not svc.alive():
                break
            time.sleep(0.2)
        svc.stop()
        raise RuntimeError(f"the API did not become ready:\n{svc.log_tail()}")

    def scrape_worker_metrics(self) -> list[str] | None:
        """The /metrics bodies of the workers started last, or None if any does not answer."""
        import httpx

        try:
            return [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text for port in self.metrics_ports]
        except httpx.HTTPError:
            return None

    def server_pids(self) -> list[int]:
        """SeaweedFS and the private redis-server: the servers whose CPU a scan also costs."""
        from producer.bench.cpu import pids_of

        return pids_of([self.local.s3, self.local.redis])

    def hold_queue(self, queue: str) -> str | None:
        return hold_queue(self.verdicts.r, queue)  # the broker is this Redis (the bench sets no BROKER_URL)

    def release_queue(self, held: str | None, queue: str) -> None:
        release_queue(self.verdicts.r, held, queue)

    def stop(self) -> None:
        self.local.stop()


def hold_queue(r, queue: str) -> str | None:
    """Move a filled queue's Redis list aside (RENAMENX), so workers start on an empty one. Returns
    the name it is held under, or None when there was nothing to hold."""
    held = queue + ".held"
    return held if r.exists(queue) and r.renamenx(queue, held) else None


def release_queue(r, held: str | None, queue: str) -> None:
    """Give the held list back under its name: a worker blocked in BRPOP on it gets it at once."""
    if held is not None:
        r.rename(held, queue)


@dataclass
class WorkerGroup:
    """The worker processes of one contender run."""

    services: list[Service]

    def stop(self) -> None:
        for svc in self.services:  # SIGTERM all first: they drain side by side
            svc.signal(signal.SIGTERM)
        for svc in self.services:
            svc.stop()


def worker_processes(config: BenchConfig, cores: int) -> int:
    return config.worker_processes or cores


def api_workers(config: BenchConfig, cores: int) -> int:
    return config.api_workers or max(1, cores // 4)


def conditions() -> dict:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_at_start": [round(v, 2) for v in load] if load else None,
            "started_at": clock.utcnow()}


def _progress(t0: float, what: str) -> None:
    print(f"bench +{time.monotonic() - t0:6.1f}s  {what}", file=sys.stderr, flush=True)


def run(config: BenchConfig, workdir: Path | None = None, partial_json: Path | None = None) -> dict:
    """Every contender in `config.only`, in order. `partial_json`: rewritten after each contender, so a
    run that is cut short (a time limit on a borrowed GPU machine) keeps what it measured."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    want = set(config.only)
    out: dict = {"config": asdict(config), "conditions": conditions(), "results": {}}
    res = out["results"]
    t0 = time.monotonic()
    corpus = corpus_mod.make_corpus(config.unique, config.seed)
    root = Path(tempfile.mkdtemp(prefix="tenderscan-bench-", dir=workdir))
    stack = Stack.start(root, config.log_level)
    watcher = None
    try:
        from workers.core.storage import S3ObjectStore

        corpus_mod.upload_images(corpus, S3ObjectStore.from_settings(stack.settings), config.copies)
        watcher = VerdictWatcher(stack.settings.redis_url)
        best = stack.settings.max_batch_size

        def attempt(name: str, label: str, fn) -> None:
            """One contender; a crash is recorded in its place and the run goes on."""
            _progress(t0, label)
            try:
                res[name] = fn()
            except Exception as exc:  # noqa: BLE001 - reported in the JSON, the other contenders still run
                res[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
                _progress(t0, f"{label} FAILED: {res[name]['error'][:200]}")
            if partial_json:
                write(dict(out, ratios=ratios(res), partial=True), partial_json, None)

        if "model" in want:
            attempt("model_limit", "model limit",
                    lambda: contenders.model_limit(stack.settings, corpus, config.batch_sizes, config.model_seconds))
            best = res["model_limit"].get("best_batch", best)
        if "work" in want:
            stack.flush()
            attempt("work_limit", "work limit", lambda: contenders.work_limit(stack, corpus, config.work_scans, best))
        procs = worker_processes(config, stack.cores)
        if "drain" in want:
            attempt("tenderscan_drain", f"tenderscan drain, {procs} worker process(es)",
                    lambda: contenders.tenderscan_drain(stack, watcher, corpus, config.scans, processes=procs))
        if "drain_one" in want and procs > 1:
            attempt("tenderscan_drain_one_process", "tenderscan drain, one worker process",
                    lambda: contenders.tenderscan_drain(stack, watcher, corpus, config.scans, processes=1))
        if "drain_bulk" in want:
            attempt("tenderscan_drain_bulk", f"tenderscan drain, bulk messages, {procs} worker process(es)",
                    lambda: contenders.tenderscan_drain(stack, watcher, corpus, config.scans, config.bulk_per_message,
                                                        processes=procs))
        if "naive_prefork" in want:
            attempt("naive_prefork", "naive prefork",
                    lambda: contenders.naive_drain(stack, watcher, corpus, config.scans, "prefork"))
        if "naive_solo" in want:
            attempt("naive_solo", "naive solo",
                    lambda: contenders.naive_drain(stack, watcher, corpus, config.solo_scans, "solo"))
        if "ceiling" in want:
            attempt("queue_ceiling_single", "queue ceiling, one scan per message",
                    lambda: contenders.queue_ceiling(stack, watcher, config.ceiling_scans, 1,
                                                     preprocess=config.ceiling_preprocess))
            attempt("queue_ceiling_multi", "queue ceiling, several scans per message",
                    lambda: contenders.queue_ceiling(stack, watcher, config.ceiling_multi_scans,
                                                     config.ceiling_per_message,
                                                     preprocess=config.ceiling_preprocess))
        if "open_loop" in want:
            base = res.get("tenderscan_drain", {}).get("scans_per_s") or 50.0
            offered = [round(f * base, 1) for f in config.loads]
            attempt("open_loop", "open loop", lambda: contenders.open_loop(
                stack, watcher, corpus, offered, config.step_seconds, processes=procs,
                api_workers=api_workers(config, stack.cores)))
    finally:
        if watcher is not None:
            watcher.close()
        stack.stop()
        shutil.rmtree(root / "s3", ignore_errors=True)
    out["worker_processes"] = worker_processes(config, stack.cores)
    out["api_workers"] = api_workers(config, stack.cores)
    out["ratios"] = ratios(res)
    steps = res.get("open_loop")
    out["open_loop_summary"] = open_loop_summary(steps if isinstance(steps, list) else [])
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["logs"] = str(root / "logs")
    return out


def _r(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(res: dict) -> dict:
    def sps(name):
        return res.get(name, {}).get("scans_per_s")

    ts = sps("tenderscan_drain")
    return {"tenderscan_over_work_limit": _r(ts, sps("work_limit")),
            "tenderscan_over_model_limit": _r(ts, sps("model_limit")),
            "tenderscan_over_naive_prefork": _r(ts, sps("naive_prefork")),
            "tenderscan_over_naive_solo": _r(ts, sps("naive_solo")),
            "one_process_over_work_limit": _r(sps("tenderscan_drain_one_process"), sps("work_limit")),
            "one_process_over_naive_prefork": _r(sps("tenderscan_drain_one_process"), sps("naive_prefork")),
            "bulk_over_work_limit": _r(sps("tenderscan_drain_bulk"), sps("work_limit")),
            "ceiling_multi_over_single": _r(sps("queue_ceiling_multi"), sps("queue_ceiling_single"))}


def open_loop_summary(steps: list[dict]) -> dict:
    """Sustainable = the highest achieved rate of a step that kept up (every scan done, >= 90% of offered);
    the target row is the step whose offered load is closest to half of it."""
    kept = [s for s in steps if s["completed"] == s["submitted"] and s["submitted"]
            and s["achieved_per_s"] >= 0.9 * s["offered_per_s"]]
    if not kept:
        return {"sustainable_per_s": None}
    sustainable = max(s["achieved_per_s"] for s in kept)
    half = min(steps, key=lambda s: abs(s["offered_per_s"] - sustainable / 2))
    return {"sustainable_per_s": sustainable, "half_load_step": half}


def write(result: dict, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    if plot_path and result["results"]:
        from producer.bench.plot import plot

        plot(result, plot_path)


def cpu_tables(res: dict) -> list[str]:
    """CPU milliseconds per scan: per contender (workers, servers), the tenderscan worker by stage,
    and the open loop's edge (API) per accepted scan."""
    from workers.core.telemetry import CPU_STAGES

    rows = [(name, r) for name, r in res.items() if isinstance(r, dict) and r.get("cpu_ms_per_scan")]
    lines: list[str] = []
    if rows:
        lines += ["", "| CPU ms per scan | scans/s | workers | servers (SeaweedFS + Redis) | workers idle, ms/s |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['scans_per_s']} | {r['cpu_ms_per_scan'].get('workers', '')} | "
                  f"{r['cpu_ms_per_scan'].get('servers', '')} | {r.get('idle_cpu_ms_per_s', {}).get('workers', '')} |"
                  for name, r in rows]
    staged = [(name, r["stage_cpu_ms_per_scan"]) for name, r in rows if r.get("stage_cpu_ms_per_scan")]
    if staged:
        cols = (*CPU_STAGES, "other")
        lines += ["", "| worker CPU ms per scan | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
        lines += [f"| {name} | " + " | ".join(str(st.get(c, "")) for c in cols) + " |" for name, st in staged]
    steps = [s for s in res.get("open_loop", []) if isinstance(res.get("open_loop"), list) and "cpu_s" in s]
    if steps:
        lines += ["", "| open loop offered/s | API CPU ms per accepted scan | one API process, CPU-bound /s | "
                  "workers ms/scan | servers ms/scan |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['offered_per_s']} | {s.get('api_cpu_ms_per_accepted', '')} | "
                  f"{s.get('api_cpu_bound_per_process_per_s', '')} | {s.get('worker_cpu_ms_per_scan', '')} | "
                  f"{s.get('server_cpu_ms_per_scan', '')} |" for s in steps]
    return lines


def markdown_table(result: dict) -> str:
    res, rows = result["results"], []
    for name in ("model_limit", "work_limit", "tenderscan_drain", "tenderscan_drain_one_process",
                 "tenderscan_drain_bulk", "naive_prefork",
                 "naive_solo", "queue_ceiling_single", "queue_ceiling_multi"):
        if name in res:
            r = res[name]
            if "error" in r:
                rows.append(f"| {name} | failed | {r['error'][:120]} |")
                continue
            note = ", ".join(f"{k}={r[k]}" for k in ("best_batch", "max_batch_size", "scans_per_message", "pool",
                                                      "processes", "concurrency", "torch_threads", "preprocess",
                                                      "scans", "completed") if k in r)
            rows.append(f"| {name} | {r['scans_per_s']} | {note} |")
    lines = ["| contender | scans/s | notes |", "|---|---:|---|", *rows, ""]
    if isinstance(res.get("open_loop"), list) and res["open_loop"]:
        lines += ["| offered/s | achieved/s | submitted | completed | p50 ms | p95 ms | p99 ms |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['offered_per_s']} | {s['achieved_per_s']} | {s['submitted']} | {s['completed']} | "
                  f"{s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |" for s in res["open_loop"]]
        lines.append("")
    lines += ["| ratio | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in result["ratios"].items())]
    lines += cpu_tables(res)
    staged = [(name, r["stages_ms"]) for name, r in res.items() if isinstance(r, dict) and r.get("stages_ms")]
    if staged:
        stages = ("queue_wait", "fetch", "decode", "batch_wait", "forward", "infer", "publish")
        lines += ["", "| mean ms per scan | " + " | ".join(stages) + " |", "|---" + "|---:" * len(stages) + "|"]
        lines += [f"| {name} | " + " | ".join(str(st.get(k, "")) for k in stages) + " |" for name, st in staged]
    return "\n".join(lines)
