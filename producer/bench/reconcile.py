"""The reconciler's cost per pass with a million stored verdicts: `python -m producer.bench.reconcile`.

    python -m producer.bench.reconcile --verdicts 1000000 --json docs/reconcile_bench.json

What it sets up (nothing here is timed by a test; the numbers go to docs/RELIABILITY.md):
    S3      a synthetic bucket holding `verdicts` finished scans over the last two daily partitions
            (image + intent + audit record each, `tenants` tenants) plus the scans in flight (image +
            intent). Keys are generated in S3's listing order when listed, so a million cost no memory;
            requests are counted as S3 bills them (a LIST per 1,000 keys, GET, HEAD, PUT).
    Redis   a private redis-server: the in-flight scans as the edge records them (state + in-flight zset),
            `stale` of them accepted long ago (their messages lost), the rest fresh; and, with
            --redis-verdicts, a verdict key per finished scan (short values: the passes never read them).
What it runs, each against the same data:
    before    the reconciler of c961825: every pass listed both partitions' intents and audit records,
              holding every verdict id in a set (what every worker ran every 15 s)
    sweep     reconcile_once now: the same listings merged per tenant, nothing held (hourly, and after a
              Redis restart)
    outstanding  reconcile_outstanding: the first pass (requeues the stale scans) and the steady pass
              after it (nothing to do); what runs every 15 s now
and reports per pass: wall and CPU time in this process, S3 requests, Redis commands (INFO stats), the
peak of Python memory (tracemalloc, a separate run), and a modelled S3 time from latencies measured
on a real SeaweedFS (--calibrate; a LIST page of 1,000 keys and a GET).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workers.core import keys
from workers.core.schemas import ScanMessage
from workers.core.storage import StoredObject

PAGE = 1000  # keys per S3 LIST request
DAY_S = 86400


class SyntheticBucket:
    """An ObjectStore with `verdicts` finished scans and `outstanding` in-flight ones, generated on listing.

    Scan i's id is i as 32 hex digits, so listing order is index order within a tenant. Finished scans
    are spread over `days` partitions and `tenants` tenants; in-flight ones are today's newest.
    """

    def __init__(self, verdicts: int, outstanding: list[tuple[str, str, str]], tenants: int, today: datetime,
                 days: int = 2) -> None:
        self.tenants = [f"t{t:03d}" for t in range(tenants)]
        self.dates = [(today - timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days)]
        self.per_group = max(1, verdicts // (days * tenants))  # finished scans per (day, tenant)
        self.outstanding = {(t, sid): at for sid, t, at in outstanding}  # (tenant, id) -> submitted_at
        self.by_group: dict[tuple[str, str], list[str]] = {}
        for sid, tenant, at in outstanding:
            self.by_group.setdefault((at[:10], tenant), []).append(sid)
        self.calls = {"list": 0, "get": 0, "head": 0, "put": 0, "delete": 0}
        self.bucket = "synthetic"

    def finished_ids(self, day: int, tenant: int) -> range:
        base = (day * len(self.tenants) + tenant) * self.per_group
        return range(base, base + self.per_group)

    def _ids(self, dt: str, tenant: str) -> Iterator[tuple[str, bool]]:
        """(scan id, finished?) of one partition and tenant, in listing order: generated, not held (the
        in-flight ids are above every finished one)."""
        day, t = self.dates.index(dt), self.tenants.index(tenant)
        yield from ((f"{i:032x}", True) for i in self.finished_ids(day, t))
        yield from ((sid, False) for sid in sorted(self.by_group.get((dt, tenant), [])))

    def _keys(self, prefix: str) -> Iterator[str]:
        area, _, rest = prefix.partition("/")
        dt = rest[3:13] if rest.startswith("dt=") else None
        for d in ([dt] if dt else self.dates):
            for tenant in self.tenants:
                base = f"{area}/dt={d}/tenant={tenant}/"
                if not (base.startswith(prefix) or prefix.startswith(base)):
                    continue
                for sid, finished in self._ids(d, tenant):
                    if area == "scans":
                        yield from (base + sid + ".jpg", base + sid + ".json")
                    elif finished:
                        yield base + sid + ".json"

    def list(self, prefix: str) -> Iterator[str]:
        self.calls["list"] += 1
        for n, key in enumerate(k for k in self._keys(prefix) if k.startswith(prefix)):
            if n and n % PAGE == 0:
                self.calls["list"] += 1
            yield key

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        self.calls["get"] += 1
        area, dt, tenant, name = key.split("/")
        sid, tenant, dt = name.removesuffix(".json"), tenant.removeprefix("tenant="), dt.removeprefix("dt=")
        at = self.outstanding.get((tenant, sid)) or f"{dt}T00:00:00.000000Z"
        msg = ScanMessage(sid, tenant, "store-1", "pos-1", keys.image_s3_key(tenant, sid, at, "JPEG"),
                          "ab" * 32, 100_000, at)
        return StoredObject(json.dumps(msg.encode()).encode(), "application/json", {})

    def exists(self, key: str) -> bool:
        self.calls["head"] += 1
        return False

    def put(self, key, data, content_type="application/octet-stream", metadata=None) -> None:
        self.calls["put"] += 1

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1


def old_pass(objects, verdicts, enqueue, now: datetime, stale_after_s: float = 60, days: int = 2) -> int:
    """The pass every worker ran every 15 s before (workers/reconcile.py at c961825), its decisions
    reduced to what costs: one set of verdict ids per partition, every intent listed, each one without
    an audit record read from S3 and its state from Redis."""
    looked = 0
    for d in range(days):
        dt = (now - timedelta(days=d)).strftime("%Y-%m-%d")
        done = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in objects.list(keys.verdicts_day_prefix(dt))}
        for key in objects.list(keys.scans_day_prefix(dt)):
            if not key.endswith(".json") or key.rsplit("/", 1)[-1].removesuffix(".json") in done:
                continue
            msg = ScanMessage.decode(objects.get(key).data)
            verdicts.get_scan(msg.scan_id)
            looked += 1
    return looked


def measure(name: str, run: Callable[[], object], objects: SyntheticBucket, r, memory: bool) -> dict:
    """One pass: wall/CPU time, S3 requests and Redis commands; with `memory`, again under tracemalloc."""
    calls_before = dict(objects.calls)
    redis_before = int(r.info("stats")["total_commands_processed"])
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    redis_commands = int(r.info("stats")["total_commands_processed"]) - redis_before - 1  # less the INFO itself
    row = {"pass": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
           "s3": {k: objects.calls[k] - calls_before[k] for k in objects.calls}, "redis_commands": redis_commands}
    if memory:
        tracemalloc.start()
        run()
        row["peak_python_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
        tracemalloc.stop()
    return row


def calibrate(root: Path) -> dict:
    """Median latency of a LIST page of 1,000 keys and of a GET, on a real SeaweedFS on this machine."""
    from producer.dev import services as devstack
    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore

    svc = devstack.start_seaweedfs(root / "s3", "bench", "bench-secret", ["bench-reconcile"], root / "logs")
    try:
        settings = Settings().with_(s3_endpoint_url=svc.extra["endpoint"], s3_access_key="bench",
                                    s3_secret_key="bench-secret", s3_bucket="bench-reconcile")
        store = S3ObjectStore.from_settings(settings)
        store.ensure_bucket()
        from concurrent.futures import ThreadPoolExecutor

        records = [keys.verdict_s3_key("t000", f"{i:032x}", "2026-01-01T00:00:00.000000Z") for i in range(3 * PAGE)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: store.put(k, b'{"v": 1}', "application/json"), records))
        pages, gets = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            assert sum(1 for _ in store.list(keys.verdicts_day_prefix("2026-01-01"))) == len(records)
            pages.append((time.perf_counter() - t0) / 3)
        for key in records[:200]:
            t0 = time.perf_counter()
            store.get(key)
            gets.append(time.perf_counter() - t0)
        return {"list_page_s": round(statistics.median(pages), 4), "get_s": round(statistics.median(gets), 5),
                "server": "SeaweedFS (weed mini) on this machine, loopback"}
    finally:
        svc.stop()


def run(args: argparse.Namespace) -> dict:
    import redis

    from producer.dev import services as devstack
    from workers.core.verdict_store import VerdictStore, redis_client
    from workers.runtime.reconcile import reconcile_once, reconcile_outstanding

    root = Path(tempfile.mkdtemp(prefix="tenderscan-reconcile-bench-"))
    red = devstack.start_redis(root / "redis", root / "logs")
    try:
        r = redis.Redis.from_url(red.extra["url"])
        verdicts = VerdictStore(redis_client(red.extra["url"]), ttl_s=DAY_S)
        now = datetime.now(UTC)  # every pass judges staleness at this instant, however long the others took
        stamp = lambda at: at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
        tenants = [f"t{t:03d}" for t in range(args.tenants)]
        outstanding = []
        for i in range(args.in_flight):  # ids above every finished one: today's newest
            age = 600 if i < args.stale else 5 + i % 50
            outstanding.append((f"{10**15 + i:032x}", tenants[i % len(tenants)], stamp(now - timedelta(seconds=age))))
        objects = SyntheticBucket(args.verdicts, outstanding, args.tenants, now)
        for sid, tenant, at in outstanding:  # as the edge records them
            verdicts.create_scan(ScanMessage(sid, tenant, "store-1", "pos-1",
                                             keys.image_s3_key(tenant, sid, at, "JPEG"), "ab" * 32, 100_000, at))
        loaded = 0
        if args.redis_verdicts:
            for start in range(0, args.verdicts, 10_000):  # the passes never read them: short values
                pipe = r.pipeline(transaction=False)
                for i in range(start, min(args.verdicts, start + 10_000)):
                    pipe.set(keys.verdict_key(f"{i:032x}"), "v", ex=DAY_S)
                pipe.execute()
                loaded = min(args.verdicts, start + 10_000)
        sent: list[ScanMessage] = []
        print(f"reconcile bench: {args.verdicts:,} stored verdicts, {args.in_flight:,} in flight "
              f"({args.stale} stale), {args.tenants} tenants; redis keys {r.dbsize():,}", flush=True)

        rows = []
        rows.append(measure("before: list + set (c961825)", lambda: old_pass(objects, verdicts, sent.append, now),
                            objects, r, args.memory))
        print(rows[-1], flush=True)
        rows.append(measure("sweep (hourly + after a Redis restart)",
                            lambda: reconcile_once(objects, verdicts, sent.append, now=now, dry_run=True),
                            objects, r, args.memory))
        print(rows[-1], flush=True)
        rows.append(measure("outstanding, first pass (requeues the stale)",
                            lambda: reconcile_outstanding(objects, verdicts, sent.append, now=now, dry_run=True),
                            objects, r, args.memory))
        reconcile_outstanding(objects, verdicts, sent.append, now=now)  # requeue them (requeued_at: real time)
        steady = [measure("outstanding, steady pass (every 15 s)",
                          lambda: reconcile_outstanding(objects, verdicts, sent.append, now=now),
                          objects, r, args.memory and i == 0) for i in range(5)]
        best = dict(min(steady, key=lambda row: row["wall_s"]))
        best["wall_s_median_of_5"] = statistics.median(row["wall_s"] for row in steady)
        rows.append(best)
        print(rows[-2], rows[-1], sep="\n", flush=True)

        cal = calibrate(root) if args.calibrate else None
        for row in rows:
            s3 = row["s3"]
            row["s3_requests"] = sum(s3.values())
            if cal:
                row["modelled_s3_s"] = round(s3["list"] * cal["list_page_s"] + (s3["get"] + s3["head"]) * cal["get_s"], 2)
        per_day = {
            "before": rows[0]["s3"]["list"] * DAY_S // 15,
            "now": rows[3]["s3"]["list"] * DAY_S // 15 + rows[1]["s3"]["list"] * DAY_S // 3600,
        }
        return {"command": "python -m producer.bench.reconcile " + " ".join(args.argv),
                "verdicts": args.verdicts, "in_flight": args.in_flight, "stale": args.stale, "tenants": args.tenants,
                "redis_verdict_keys": loaded, "machine": f"{platform.machine()}, {platform.python_version()}, "
                f"{os.cpu_count()} CPUs (shared)", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "calibration": cal, "passes": rows, "s3_list_requests_per_day": per_day}
    finally:
        red.stop()
        shutil.rmtree(root, ignore_errors=True)


def table(result: dict) -> str:
    cols = ["pass", "wall_s", "cpu_s", "s3 LIST", "s3 GET", "redis cmds", "peak MiB", "modelled S3 s"]
    rows = [[p["pass"], str(p["wall_s"]), str(p["cpu_s"]), str(p["s3"]["list"]), str(p["s3"]["get"] + p["s3"]["head"]),
             str(p["redis_commands"]), str(p.get("peak_python_mib", "–")), str(p.get("modelled_s3_s", "–"))]
            for p in result["passes"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verdicts", type=int, default=1_000_000, help="finished scans stored (two daily partitions)")
    p.add_argument("--in-flight", type=int, default=2000, help="scans accepted without a verdict yet")
    p.add_argument("--stale", type=int, default=50, help="of those, accepted 10 min ago (messages lost)")
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--no-redis-verdicts", dest="redis_verdicts", action="store_false",
                   help="do not load a verdict key per finished scan into Redis")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the tracemalloc runs")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip the SeaweedFS latency calibration (no modelled S3 time)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    from workers.core.logging import configure_logging

    configure_logging("WARNING", stream="stderr")  # the passes' per-scan events would drown the table
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the private redis-server on the way out
    result = run(args)
    print(table(result))
    print(f"S3 LIST requests per day: before {result['s3_list_requests_per_day']['before']:,}, "
          f"now {result['s3_list_requests_per_day']['now']:,}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
