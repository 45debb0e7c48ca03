"""Webhook delivery lag on loopback: `python -m producer.bench.webhooks`.

    python -m producer.bench.webhooks --rate 50 --seconds 20 --json docs/webhook_bench.json
    python -m producer.bench.webhooks --rate 50 --seconds 20 --outage-s 60 --json docs/webhook_bench_outage.json

What runs, all real processes on 127.0.0.1 (nothing here is imported by the API or the workers):
    redis      a private redis-server (producer.dev.services.start_redis)
    deliverer  `tenderscan webhook deliver` with the deployed defaults (backoff, concurrency, per-endpoint
               limit, poll interval) except the allow list (loopback) and what --poll-s / --backoff-base-s set
    receiver   `python -m producer.bench.webhooks receive`: verifies each request's signature
               (producer.client.verify), answers 200, and appends {id, verified, received_at, timestamp}
    emitter    this process: scan.completed events through workers.webhooks.events.emit, `rate` per
               second for `seconds`, each stamped with the time it is emitted

Lag per event = the receiver's clock at the first verified 2xx − the event's `timestamp` (the time it
happened, as the deliverer's tenderscan_webhook_delivery_lag_seconds measures it); one machine, one clock.
With --outage-s the receiver is not running when the emitter starts and comes up `outage-s` later: every
event is then retried by the deliverer's own backoff until it arrives (or --drain-s runs out; missing
events are reported, never hidden). The JSON holds the run's parameters, p50/p90/p99/max lag, and the
counts; docs/WEBHOOKS.md (Benchmark) shows them with the command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# --- the receiver (its own process) ---------------------------------------------------------------
def receive(port: int, secret: str, out_path: str) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from producer.client import WebhookVerificationError, verify

    lock = threading.Lock()
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.time()
            try:
                event = verify(secret, dict(self.headers), body)
                verified = True
            except WebhookVerificationError:
                event, verified = {}, False
            with lock:
                out.write(json.dumps({"id": self.headers.get("webhook-id"), "verified": verified, "received_at": at,
                                      "timestamp": event.get("timestamp")}) + "\n")
            self.send_response(200 if verified else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# --- the run ----------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def lags_ms(lines: list[dict], emitted: set[str]) -> dict[str, float]:
    """Per emitted event id, ms from its timestamp to its first verified arrival."""
    from workers.core import clock

    first: dict[str, float] = {}
    for line in lines:
        if line["verified"] and line["id"] in emitted and line["id"] not in first:
            first[line["id"]] = 1000 * (line["received_at"] - clock.parse_time(line["timestamp"]).timestamp())
    return first


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def run(rate: float, seconds: float, outage_s: float = 0.0, drain_s: float = 300.0, poll_s: float | None = None,
        backoff_base_s: float | None = None, work: Path | None = None) -> dict:
    import threading

    from producer.dev.services import free_port, spawn, start_redis, tenderscan_command, wait_for_port
    from workers.core.verdict_store import redis_client
    from workers.webhooks.addresses import parse_allow
    from workers.webhooks.endpoints import EndpointStore
    from workers.webhooks.events import emit

    work = work or Path(tempfile.mkdtemp(prefix="tenderscan-webhook-bench-"))
    logs = work / "logs"
    services = []
    try:
        redis_svc = start_redis(work / "redis", logs)
        services.append(redis_svc)
        r = redis_client(redis_svc.extra["url"])
        port = free_port()
        endpoint = EndpointStore(r, parse_allow(["127.0.0.0/8"])).add("bench", f"http://127.0.0.1:{port}/hook")
        out = work / "received.jsonl"
        receiver_cmd = [sys.executable, "-m", "producer.bench.webhooks", "receive", str(port),
                        endpoint.secrets[0].value, str(out)]
        env = {**os.environ, "TENDERSCAN_REDIS_URL": redis_svc.extra["url"],
               "TENDERSCAN_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}
        if poll_s is not None:
            env["TENDERSCAN_WEBHOOK_POLL_S"] = str(poll_s)
        if backoff_base_s is not None:
            env["TENDERSCAN_WEBHOOK_BACKOFF_BASE_S"] = str(backoff_base_s)
        receiver = None
        if outage_s <= 0:
            receiver = spawn("receiver", receiver_cmd, logs, cwd=ROOT)
            services.append(receiver)
            wait_for_port(port, 15, receiver.proc)
        deliverer = spawn("deliverer", [*tenderscan_command(), "webhook", "deliver", "--heartbeat-file",
                                        str(work / "hb")], logs, env=env, cwd=ROOT)
        services.append(deliverer)
        deadline = time.monotonic() + 60
        while not (work / "hb").exists():  # its first heartbeat: imports done, the loop turning
            if time.monotonic() > deadline or not deliverer.alive():
                raise RuntimeError(f"the deliverer never started:\n{deliverer.log_tail()}")
            time.sleep(0.05)

        receiver_up: dict[str, float] = {}

        def receiver_returns() -> None:  # the outage ends: a timer thread, so the emitting keeps its pace
            svc = spawn("receiver", receiver_cmd, logs, cwd=ROOT)
            services.append(svc)
            wait_for_port(port, 15, svc.proc)
            receiver_up["at"] = time.time()

        timer = threading.Timer(outage_s, receiver_returns) if receiver is None else None
        emitted: list[str] = []
        start = time.monotonic()
        if timer:
            timer.start()
        for i in range(int(rate * seconds)):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            event_id = emit(r, "bench", "scan.completed", {"scan_id": f"{i:032x}", "decision": "genuine"})
            if event_id:
                emitted.append(event_id)
        emit_s = time.monotonic() - start
        if timer:
            timer.join()
        wanted = set(emitted)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and len(lags_ms(read_lines(out), wanted)) < len(wanted):
            time.sleep(0.25)
        lines = read_lines(out)
        lag = lags_ms(lines, wanted)
        values = list(lag.values())
        arrivals = sorted(line["received_at"] for line in lines if line["verified"])
        report = {
            "rate_per_s": rate, "seconds": seconds, "outage_s": outage_s, "emitted": len(emitted),
            "emit_s": round(emit_s, 2), "delivered": len(lag), "missing": len(wanted) - len(lag),
            "requests": len(lines), "duplicates": len([x for x in lines if x["verified"]]) - len(lag),
            "unverified": len([x for x in lines if not x["verified"]]),
            "deliverer_env": {k: v for k, v in env.items() if k.startswith("TENDERSCAN_WEBHOOK_")},
        }
        if values:
            report["lag_ms"] = {"p50": round(percentile(values, 50), 1), "p90": round(percentile(values, 90), 1),
                                "p99": round(percentile(values, 99), 1), "max": round(max(values), 1),
                                "mean": round(statistics.fmean(values), 1)}
        if "at" in receiver_up and arrivals:
            report["last_arrival_after_receiver_up_s"] = round(arrivals[-1] - receiver_up["at"], 2)
        return report
    finally:
        for svc in reversed(services):
            svc.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["receive"]:
        receive(int(argv[1]), argv[2], argv[3])
        return 0
    p = argparse.ArgumentParser(prog="python -m producer.bench.webhooks", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to emit (default 20)")
    p.add_argument("--outage-s", type=float, default=0.0, help="the receiver comes up this long after the "
                   "first event (default 0: up throughout)")
    p.add_argument("--drain-s", type=float, default=300.0, help="after the emitting, wait this long at most "
                   "for every event to arrive (default 300)")
    p.add_argument("--poll-s", type=float, default=None, help="TENDERSCAN_WEBHOOK_POLL_S for the deliverer "
                   "(default: the setting's default)")
    p.add_argument("--backoff-base-s", type=float, default=None, help="TENDERSCAN_WEBHOOK_BACKOFF_BASE_S "
                   "(default: the setting's default)")
    p.add_argument("--json", type=Path, default=None, help="write the report here (and print it)")
    args = p.parse_args(argv)
    report = run(args.rate, args.seconds, args.outage_s, args.drain_s, args.poll_s, args.backoff_base_s)
    report = {"command": "python -m producer.bench.webhooks " + " ".join(argv),
              "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": platform.node(),
              "cpus": os.cpu_count(), **report}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
