"""`tenderscan webhook`: a tenant's signed webhook endpoints, and the process that delivers to them.

    webhook add T URL [--description D]   a new endpoint; its signing secret is printed ONCE on stdout
    webhook list T [--json]               endpoints: url, health (failing / disabled), parked, secrets
    webhook test T EP                     a `webhook.test` event to that endpoint (delivered like any)
    webhook rotate T EP                   a new secret (stdout, once); the old one also signs for
                                          TENDERSCAN_WEBHOOK_ROTATION_OVERLAP_S
    webhook deliveries T EP [--limit N]   the endpoint's delivery log, newest first
    webhook enable T EP                   re-enable a disabled endpoint; its parked events go out again
    webhook remove T EP                   delete the endpoint (its pending deliveries are dropped)
    webhook deliver                       the delivery loop; run one or more beside the workers

Endpoints live in Redis (TENDERSCAN_REDIS_URL); docs/WEBHOOKS.md says how a back-end verifies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HEARTBEAT_FILE = "/tmp/tenderscan-webhooks.heartbeat"  # the deliverer's liveness file (infra/k8s/webhooks.yaml)
HEARTBEAT_EVERY_S = 5.0


def register(subparsers) -> None:
    p = subparsers.add_parser("webhook", help="signed webhooks: endpoints, secrets, delivery log, the deliverer",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)

    def endpoint_cmd(name: str, help_: str, func) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("tenant")
        c.add_argument("endpoint_id", metavar="EP")
        c.set_defaults(func=func)
        return c

    a = sub.add_parser("add", help="a new endpoint for a tenant (its secret is printed once)")
    a.add_argument("tenant")
    a.add_argument("url")
    a.add_argument("--description", default="", help="a note for the operator (shown by list --json)")
    a.set_defaults(func=run_add)
    ls = sub.add_parser("list", help="a tenant's endpoints and their health")
    ls.add_argument("tenant")
    ls.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    ls.set_defaults(func=run_list)
    endpoint_cmd("test", "send a webhook.test event to one endpoint", run_test)
    endpoint_cmd("rotate", "a new signing secret; the old one keeps signing for the overlap", run_rotate)
    d = endpoint_cmd("deliveries", "the endpoint's delivery log, newest first", run_deliveries)
    d.add_argument("--limit", type=int, default=20, help="newest records to show (default 20)")
    d.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    endpoint_cmd("enable", "re-enable a disabled endpoint; parked events go out again", run_enable)
    endpoint_cmd("remove", "delete an endpoint", run_remove)
    dl = sub.add_parser("deliver", help="run the delivery loop until SIGTERM")
    dl.add_argument("--heartbeat-file", default=HEARTBEAT_FILE,
                    help=f"kept fresh while the loop turns, for `python -m workers.health --file` (default {HEARTBEAT_FILE})")
    dl.set_defaults(func=run_deliver)


def _context():
    from workers.core.settings import Settings
    from workers.core.verdict_store import redis_client
    from workers.webhooks.addresses import parse_allow
    from workers.webhooks.endpoints import EndpointStore
    from workers.webhooks.outbox import Outbox

    settings = Settings.from_env()
    client = redis_client(settings.redis_url)
    return settings, client, EndpointStore(client, parse_allow(settings.webhook_allow_cidrs)), Outbox(client, settings.webhook_retention_s, settings.webhook_lease_s)


def run_add(args: argparse.Namespace) -> int:
    _, _, endpoints, _ = _context()
    ep = endpoints.add(args.tenant, args.url, args.description)
    print(ep.secrets[0].value)
    print(f"tenant {ep.tenant}: endpoint {ep.id} -> {ep.url}; the secret above is shown once, store it now",
          file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    _, _, endpoints, outbox = _context()
    now = time.time()
    rows = []
    for ep in endpoints.list(args.tenant):
        state = outbox.state(ep.tenant, ep.id)
        health = ("disabled" if "disabled_at" in state else
                  f"failing {now - state['failing_since']:.0f}s" if "failing_since" in state else "ok")
        rows.append({"id": ep.id, "url": ep.url, "created": ep.created, "health": health, "parked": state["parked"],
                     "signing_secrets": len(ep.signing_secrets(now)), "description": ep.description})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['id']}  {r['health']:<14} parked={r['parked']:<5} secrets={r['signing_secrets']}  {r['url']}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    from workers.core.enums import WebhookEvent
    from workers.webhooks.events import emit

    settings, client, endpoints, _ = _context()
    endpoints.get(args.tenant, args.endpoint_id)  # an unknown endpoint is an error, not a silent no-op
    msg_id = emit(client, args.tenant, WebhookEvent.TEST, {"endpoint_id": args.endpoint_id},
                  retention_s=settings.webhook_retention_s, endpoint_id=args.endpoint_id)
    print(json.dumps({"msg_id": msg_id, "note": "see `tenderscan webhook deliveries` for its outcome"}))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    settings, _, endpoints, _ = _context()
    ep = endpoints.rotate(args.tenant, args.endpoint_id, settings.webhook_rotation_overlap_s, time.time())
    print(ep.secrets[0].value)
    print(f"endpoint {ep.id}: new secret above, shown once; the previous one also signs for "
          f"{settings.webhook_rotation_overlap_s} s", file=sys.stderr)
    return 0


def run_deliveries(args: argparse.Namespace) -> int:
    _, _, endpoints, outbox = _context()
    endpoints.get(args.tenant, args.endpoint_id)
    records = outbox.log(args.tenant, args.endpoint_id, args.limit)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    for r in records:
        print(f"{r['at'][:19]}  {r['outcome']:<9} attempt={r['attempt']:<3} status={r.get('status') or '-':<4} "
              f"{r.get('latency_ms', '-')} ms  {r.get('type', '-')}  {r['msg_id']}  {r.get('reason') or ''}")
    return 0


def run_enable(args: argparse.Namespace) -> int:
    _, _, endpoints, outbox = _context()
    endpoints.get(args.tenant, args.endpoint_id)
    moved = outbox.enable(args.tenant, args.endpoint_id, time.time())
    print(f"endpoint {args.endpoint_id} enabled; {moved} parked deliveries are due now", file=sys.stderr)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    _, _, endpoints, _ = _context()
    endpoints.remove(args.tenant, args.endpoint_id)
    print(f"endpoint {args.endpoint_id} removed", file=sys.stderr)
    return 0


def run_deliver(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from workers.runtime.health import beat
    from workers.webhooks.deliverer import Deliverer

    settings, client, _, _ = _context()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    heartbeat, last = Path(args.heartbeat_file), [0.0]

    def tick() -> None:  # the loop turns at least every WEBHOOK_POLL_S; a stuck one goes stale
        if time.monotonic() - last[0] >= HEARTBEAT_EVERY_S:
            beat(heartbeat)
            last[0] = time.monotonic()

    if settings.metrics_port:  # tenderscan_webhook_deliveries, tenderscan_webhook_attempt_seconds
        from workers.core import telemetry

        telemetry.serve(settings.metrics_port)
    Deliverer.from_settings(settings, client).run(stop, tick)
    return 0
