"""The contenders. Each returns a plain dict for the JSON report; none sets a target or judges one.

    model_limit      the raw model in this process on pre-decoded tensors, every batch size; the best
    work_limit       pipeline.process_scan in this process: S3 GET + checksum + decode + batched forward
                     + SET NX verdict + S3 audit, with the worker's concurrency and batching, no queue
    tenderscan_drain the real worker (`celery -A workers.app -P threads`, N processes) on a pre-filled queue
    naive_drain      producer.bench.naive as -P prefork (one child per core) or -P solo
    queue_ceiling    producer.bench.ceiling: the real worker with zero-cost fetch and forward stand-ins
    open_loop        API + worker, Poisson arrivals at each offered load, submit -> verdict latency

Throughput is sustained completions per second between the first and the last verdict of a run
(`watch.rate`), so worker start-up and model loading are not counted for any contender.

CPU per scan (`cpu_ms_per_scan`): user + system time of the worker processes (children included), of
the servers (SeaweedFS, Redis) and, in the open loop, of the API processes, read from their own
accounting (producer/bench/cpu.py) over the drain alone, divided by the scans it completed. A drain
holds its filled queue aside (RENAME) while the workers start, so their start-up and model loading
fall outside the window. `stage_cpu_ms_per_scan`: the tenderscan worker's own per-stage counters
(telemetry.CPU_STAGES) over the same window; `other` is the worker CPU no stage claims (Celery, thread
hand-offs, the batcher's loop).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from producer.bench import corpus as corpus_mod
from producer.bench.cpu import CpuMeter, per_scan_ms, pids_of
from producer.bench.watch import VerdictWatcher, latency_summary, rate
from producer.dev.services import Service
from workers.core import clock, keys, schemas, telemetry
from workers.core.schemas import ScanMessage


def model_limit(settings, corpus, batch_sizes=(1, 8, 16, 32, 64), seconds: float = 2.0) -> dict:
    import torch

    from workers.core import imaging
    from workers.runtime.runner import load_model

    model = load_model(settings)
    limits = imaging.Limits.from_settings(settings)
    tensors = [model.preprocess(imaging.decode(data, limits)[0]) for data in corpus.images]
    by_batch = {}
    for bs in batch_sizes:
        x = model.input_batch([tensors[i % len(tensors)] for i in range(bs)])  # the ready model input
        model.forward(x)  # warm-up at this shape
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            preds = model.forward(x)
            preds.p_counterfeit.cpu()
            n += bs
        by_batch[bs] = round(n / (time.monotonic() - t0), 1)
    best = max(by_batch, key=by_batch.get)
    return {"scans_per_s": by_batch[best], "best_batch": best, "by_batch": by_batch, "device": str(model.device),
            "torch_threads": torch.get_num_threads()}


def work_limit(stack, corpus, n: int, best_batch: int) -> dict:
    """One process, no queue, the worker's concurrency; batches up to the model's best batch size."""
    from workers.runtime import pipeline
    from workers.runtime.context import WorkerContext
    from workers.runtime.runner import ModelRunner

    # the tenderscan worker's concurrency (scans in flight), batches up to the model's best size
    settings = stack.settings.with_(max_batch_size=best_batch,
                                    worker_concurrency=stack.settings.effective_concurrency)
    from workers.core.logging import configure_logging

    # the in-process pipeline logs its scan_done events to a file, as a worker does (not to the terminal)
    log_file = open(stack.logs / "work-limit.log", "a")  # noqa: SIM115 - closed below
    configure_logging(settings.log_level, True, stream=log_file)
    runner = ModelRunner.from_settings(settings)
    runner.warm_up()
    ctx = WorkerContext.from_settings(settings)
    ctx.runner = runner
    ctx.load()  # the S3 and Redis stores, as a worker process builds them
    msgs = corpus_mod.messages(corpus, n)
    for m in msgs:
        ctx.verdicts.create_scan(m)
    before = telemetry.stage_means_ms()
    servers = CpuMeter({"servers": stack.server_pids()})
    servers_before, cpu_before, stage_cpu_before = servers.sample(), time.process_time(), telemetry.stage_cpu_s()
    done: list[float] = []
    lock = threading.Lock()

    def one(msg):
        pipeline.process_scan(msg, ctx)
        with lock:
            done.append(time.monotonic())

    try:
        with ThreadPoolExecutor(settings.effective_concurrency) as pool:
            list(pool.map(one, msgs))
        # the whole bench process: the pipeline, its thread pool, and the idle verdict listener
        cpu_s = {"workers": time.process_time() - cpu_before, **servers.since(servers_before)}
        stage_cpu = stage_cpu_delta(stage_cpu_before, telemetry.stage_cpu_s())
    finally:
        ctx.close()
        configure_logging("WARNING", True, stream=sys.stderr)
        log_file.close()
    return {"scans": n, "scans_per_s": round(rate(sorted(done)), 1), "max_batch_size": best_batch,
            "concurrency": settings.effective_concurrency,
            "stages_ms": _delta(before, telemetry.stage_means_ms()),
            "cpu_ms_per_scan": per_scan_ms(cpu_s, len(done)),
            "stage_cpu_ms_per_scan": stage_breakdown(stage_cpu, cpu_s["workers"], len(done))}


def stage_cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {stage: after[stage] - before.get(stage, 0.0) for stage in after}


def stage_breakdown(stage_cpu_s: dict[str, float], worker_cpu_s: float | None, scans: int) -> dict[str, float]:
    """Per-stage CPU milliseconds per scan, in telemetry.CPU_STAGES order, plus `other`: the worker
    processes' CPU that no stage claims (absent without the process total)."""
    if scans <= 0 or not stage_cpu_s:
        return {}
    out = {stage: round(1000 * stage_cpu_s.get(stage, 0.0) / scans, 3) for stage in telemetry.CPU_STAGES}
    if worker_cpu_s is not None:
        out["other"] = round(1000 * (worker_cpu_s - sum(stage_cpu_s.values())) / scans, 3)
    return out


def _delta(before: dict, after: dict) -> dict:
    out = {}
    for stage, a in after.items():
        b = before.get(stage, {"mean_ms": 0.0, "count": 0})
        count = a["count"] - b["count"]
        if count > 0:
            out[stage] = round((a["mean_ms"] * a["count"] - b["mean_ms"] * b["count"]) / count, 3)
    return out


def process_env(processes: int, cores: int) -> dict[str, str]:
    """Each of `processes` workers on one machine gets an equal share of its cores for torch's intra-op
    threads (OMP_NUM_THREADS, read when torch is imported)."""
    return {"OMP_NUM_THREADS": str(max(1, cores // processes))}


# workers count as started once they use less CPU than this, per worker process (ms per second; idle
# ones use ~5 here: polling, heartbeat), so a GPU node's 16 processes settle as two do
QUIET_MS_PER_S_PER_PROCESS = 50.0


def _drain(stack, watcher: VerdictWatcher, msgs, start_worker, fill, timeout: float,
           queue: str = keys.QUEUE) -> dict:
    """Fill the queue, hold it aside, start the workers, give the queue back, time first -> last
    verdict and measure the CPU in between, stop them."""
    stack.flush()
    fill(msgs)
    held = stack.hold_queue(queue)  # the workers start on an empty queue: start-up CPU is not the drain's
    workers = start_worker()
    try:
        meter = CpuMeter({"workers": pids_of(workers.services), "servers": stack.server_pids()})
        # prefork children may still be loading their model after "ready"
        before, idle = settle(meter, quiet_ms_per_s=QUIET_MS_PER_S_PER_PROCESS * len(workers.services))
        stage_before = _scrape_stage_cpu(stack)
        stack.release_queue(held, queue)
        ok = watcher.wait_for([m.scan_id for m in msgs], timeout)
        times = watcher.times(m.scan_id for m in msgs)
        stages = _scrape_settled(stack, len(times))
        cpu_s = meter.since(before)
        stage_after = _scrape_stage_cpu(stack)
    finally:
        workers.stop()
    stage_cpu = (stage_breakdown(stage_cpu_delta(stage_before, stage_after), cpu_s["workers"], len(times))
                 if stage_before is not None and stage_after is not None else {})
    return {"scans": len(msgs), "completed": len(times), "all_done": ok, "scans_per_s": round(rate(times), 1),
            **({"stages_ms": {k: v["mean_ms"] for k, v in stages.items()}} if stages else {}),
            "cpu_s": cpu_s, "cpu_ms_per_scan": per_scan_ms(cpu_s, len(times)), "idle_cpu_ms_per_s": idle,
            **({"stage_cpu_ms_per_scan": stage_cpu} if stage_cpu else {})}


def settle(meter: CpuMeter, group: str = "workers", quiet_ms_per_s: float = 100.0, step_s: float = 1.0,
           timeout_s: float = 60.0) -> tuple[dict[str, float], dict[str, float]]:
    """Wait until `group` uses less than `quiet_ms_per_s` of CPU over a `step_s` interval (or timeout_s
    passed). Returns the last sample and every group's rate over that last interval (ms of CPU per s):
    the idle cost the drain's figures then include."""
    deadline = time.monotonic() + timeout_s
    last, t_last = meter.sample(), time.monotonic()
    while True:
        time.sleep(step_s)
        now, t_now = meter.sample(), time.monotonic()
        rates = {k: round(1000 * (now[k] - last[k]) / (t_now - t_last), 1) for k in now}
        if rates[group] < quiet_ms_per_s or t_now > deadline:
            return now, rates
        last, t_last = now, t_now


def _scrape_stage_cpu(stack) -> dict[str, float] | None:
    """The workers' per-stage CPU counters summed over their processes, or None if one does not answer."""
    texts = stack.scrape_worker_metrics()
    if texts is None:
        return None
    total: dict[str, float] = {}
    for text in texts:
        for stage, seconds in telemetry.parse_stage_cpu(text).items():
            total[stage] = total.get(stage, 0.0) + seconds
    return total


def merged_stage_means(texts: list[str]) -> dict[str, dict[str, float]]:
    """The stage breakdown over several workers' /metrics bodies: means weighted by their counts."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for text in texts:
        for stage, m in telemetry.parse_stage_means(text).items():
            sums[stage] = sums.get(stage, 0.0) + m["mean_ms"] * m["count"]
            counts[stage] = counts.get(stage, 0) + m["count"]
    return {s: {"mean_ms": round(sums[s] / counts[s], 3), "count": counts[s]} for s in counts if counts[s]}


def _scrape_settled(stack, completed: int, timeout: float = 5.0) -> dict | None:
    """The workers' stage breakdown once their histograms count every published scan (a verdict is
    published before its scan_done event and metrics), or the last scrape's after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        texts = stack.scrape_worker_metrics()
        if texts is None:
            return None
        stages = merged_stage_means(texts)
        if stages.get("publish", {}).get("count", 0) >= completed or time.monotonic() > deadline:
            return stages
        time.sleep(0.2)


def tenderscan_drain(stack, watcher, corpus, n: int, per_message: int = 1, processes: int = 1,
                     timeout: float = 300) -> dict:
    msgs = corpus_mod.messages(corpus, n)
    task = keys.TASK_NAME if per_message == 1 else keys.MULTI_TASK_NAME

    def fill(ms):
        for m in ms:
            stack.verdicts.create_scan(m)
        corpus_mod.enqueue(stack.celery, ms, task, keys.QUEUE, per_message)

    env = process_env(processes, stack.cores)
    out = _drain(stack, watcher, msgs,
                 lambda: stack.start_worker("workers.app", "threads", processes=processes, extra_env=env), fill, timeout)
    return dict(out, scans_per_message=per_message, processes=processes,
                torch_threads=int(env["OMP_NUM_THREADS"]), concurrency=stack.settings.effective_concurrency,
                max_batch_size=stack.settings.max_batch_size, max_wait_ms=stack.settings.max_wait_ms)


def naive_drain(stack, watcher, corpus, n: int, pool: str, timeout: float = 300) -> dict:
    from producer.bench import naive

    msgs = corpus_mod.messages(corpus, n)
    concurrency = stack.cores if pool == "prefork" else 1

    def fill(ms):
        for m in ms:
            stack.verdicts.create_scan(m)
        corpus_mod.enqueue(stack.celery, ms, naive.TASK, naive.QUEUE)

    out = _drain(stack, watcher, msgs,
                 lambda: stack.start_worker("producer.bench.naive", pool, concurrency, queue=naive.QUEUE),
                 fill, timeout, queue=naive.QUEUE)
    return dict(out, pool=pool, concurrency=concurrency, batch_size=1)


def queue_ceiling(stack, watcher, n: int, per_message: int, preprocess: bool = True, timeout: float = 300) -> dict:
    """One worker process (the target is per process). `preprocess`: the stand-in image goes through the
    checkpoint's per-scan preprocessing, as a real scan does; False leaves the queue and plumbing alone."""
    from producer.bench.standins import tiny_png, tiny_png_sha256

    sha, size = tiny_png_sha256(), len(tiny_png())
    msgs = [ScanMessage(scan_id=schemas.new_scan_id(), tenant=corpus_mod.TENANT, store_id="bench-store",
                                 terminal_id="pos-0", image_key="stand-in.png", sha256=sha, bytes=size,
                                 submitted_at=clock.utcnow()) for _ in range(n)]
    task = keys.TASK_NAME if per_message == 1 else keys.MULTI_TASK_NAME
    env = {"TENDERSCAN_BENCH_CEILING_PREPROCESS": "true" if preprocess else "false"}
    out = _drain(stack, watcher, msgs, lambda: stack.start_worker("producer.bench.ceiling", "threads", extra_env=env),
                 lambda ms: corpus_mod.enqueue(stack.celery, ms, task, keys.QUEUE, per_message), timeout)
    return dict(out, scans_per_message=per_message, messages=-(-n // per_message), processes=1,
                preprocess="checkpoint" if preprocess else "none",
                stand_ins="fetch: StandInObjectStore, forward: StandInRunner (producer/bench/standins.py)")


def open_loop(stack, watcher, corpus, offered: list[float], seconds: float, settle_s: float = 20.0,
              seed: int = 7, processes: int = 1, api_workers: int = 1) -> list[dict]:
    """Poisson arrivals per offered load; latency from the scheduled arrival (no coordinated omission)."""
    import httpx

    stack.flush()
    api = stack.start_api(api_workers)
    worker = stack.start_worker("workers.app", "threads", processes=processes,
                                extra_env=process_env(processes, stack.cores))
    rng = random.Random(seed)
    steps = []
    meter = CpuMeter({"api": pids_of([api]), "workers": pids_of(worker.services), "servers": stack.server_pids()})
    try:
        http = httpx.Client(base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {stack.api_key}"},
                            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        # warm-up, not reported: every worker task thread and API thread takes its first requests (their
        # one-time costs: connections, per-thread clients) here, not in the first measured step. It was
        # 2 s at 2/s (~4 scans for 2 x 64 task threads); the first step's p99 then read 219-365 ms at
        # 33.8/s here, and 129.8 ms when that load came second (docs/history/PERFORMANCE-log.md, run D).
        _open_loop_step(http, watcher, corpus, offered[0] if offered else 2.0, WARM_UP_S, settle_s, rng)
        for load in offered:
            before = meter.sample()
            step = _open_loop_step(http, watcher, corpus, load, seconds, settle_s, rng)
            steps.append(dict(step, **open_loop_cpu(meter.since(before), step["submitted"], step["completed"])))
            time.sleep(1.0)
        http.close()
        scraped = stack.scrape_worker_metrics()
        if scraped and steps:
            steps[-1]["worker_stages_ms_cumulative"] = {k: v["mean_ms"]
                                                        for k, v in merged_stage_means(scraped).items()}
    finally:
        worker.stop()
        api.stop()
    return steps


def open_loop_cpu(cpu_s: dict[str, float], accepted: int, completed: int) -> dict:
    """One step's CPU: the API's per accepted scan (the edge's cost: inspect, two S3 PUTs, Redis, the
    enqueue), the workers' and servers' per completed scan, and what one API process could accept if
    the edge's CPU were its only limit (1 s / the API's CPU per scan, per process: an upper bound)."""
    out: dict = {"cpu_s": cpu_s}
    if accepted:
        api_ms = 1000 * cpu_s.get("api", 0.0) / accepted
        out["api_cpu_ms_per_accepted"] = round(api_ms, 3)
        out["api_cpu_bound_per_process_per_s"] = round(1000 / api_ms, 1) if api_ms else None
    if completed:
        out["worker_cpu_ms_per_scan"] = round(1000 * cpu_s.get("workers", 0.0) / completed, 3)
        out["server_cpu_ms_per_scan"] = round(1000 * cpu_s.get("servers", 0.0) / completed, 3)
    return out


WARM_UP_S = 5.0  # open loop: seconds of traffic at the first offered load before the measured steps


def poisson_arrivals(rate_per_s: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival offsets (s) of a Poisson process: exponential gaps, as many independent terminals make."""
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= seconds:
            return out
        out.append(t)


def submit_paced(http, corpus, arrivals: list[float], params: dict | None = None) -> tuple[dict[str, float], list[str]]:
    """POST one corpus scan to /v1/scans at each arrival (monotonic s), from 64 threads so a slow answer
    never delays the next arrival: (scan id -> its scheduled arrival, the submit errors' type names)."""
    submitted: dict[str, float] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def submit(at: float, j: int) -> None:
        try:
            resp = http.post("/v1/scans", content=corpus.images[j % len(corpus.images)],
                             headers={"Content-Type": "image/jpeg"},
                             params={"store_id": "bench-store", "terminal_id": f"pos-{j % 50}", **(params or {})})
            resp.raise_for_status()
            with lock:
                submitted[resp.json()["scan_id"]] = at
        except Exception as exc:  # noqa: BLE001 - counted as a submit error in the step's figures
            with lock:
                errors.append(type(exc).__name__)

    with ThreadPoolExecutor(64) as pool:
        for j, at in enumerate(arrivals):
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(submit, at, j)
    return submitted, errors


def _open_loop_step(http, watcher, corpus, load: float, seconds: float, settle_s: float, rng) -> dict:
    t0 = time.monotonic() + 0.2
    arrivals = [t0 + t for t in poisson_arrivals(load, seconds, rng)]
    submitted, errors = submit_paced(http, corpus, arrivals)
    watcher.wait_for(list(submitted), settle_s)
    done = {sid: watcher.done[sid] for sid in submitted if sid in watcher.done}
    latencies = [done[sid] - at for sid, at in submitted.items() if sid in done]
    finished = sorted(done.values())
    window = (finished[-1] - arrivals[0]) if finished and arrivals else 0.0
    return {"offered_per_s": load, "submitted": len(submitted), "submit_errors": len(errors),
            "completed": len(done), "achieved_per_s": round(len(done) / window, 1) if window else 0.0,
            **latency_summary(latencies)}


def wait_ready(svc: Service, timeout: float = 120) -> None:
    svc.wait_for_log(" ready.", timeout)
