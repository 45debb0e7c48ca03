"""`tenderscan model publish | promote | compare | events | list | resolve`: the S3 model registry (workers/core/registry.py)."""

from __future__ import annotations

import argparse


def _limit(text: str) -> float | None:
    return None if text.lower() in ("off", "none") else float(text)


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="publish / promote / list models in the S3 registry")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")

    pub = sub.add_parser("publish", help="gate, then upload a checkpoint and its evaluation",
                         description="Refuses a model whose evaluation misses the quality gate. Each limit "
                         "can be changed, or switched off with 'off'.")
    pub.add_argument("checkpoint")
    pub.add_argument("--version", required=True, help="the version to publish it as")
    pub.add_argument("--evaluation", default=None,
                     help="evaluation JSON (default: evaluation.json beside the checkpoint)")
    pub.add_argument("--min-accuracy", type=_limit, default=0.995, help="gate (default 0.995)")
    pub.add_argument("--max-false-reject", type=_limit, default=0.005, help="gate (default 0.005)")
    pub.add_argument("--max-miss", type=_limit, default=0.01, help="gate (default 0.01)")
    pub.add_argument("--max-review", type=_limit, default=0.03, help="gate (default 0.03)")
    pub.add_argument("--min-sign-recall", type=_limit, default=0.97, help="gate (default 0.97)")
    pub.add_argument("--min-subtle-caught", type=_limit, default=0.90, help="gate (default 0.90)")
    pub.add_argument("--min-harsh-accuracy", type=_limit, default=0.97, help="gate (default 0.97)")
    pub.set_defaults(func=run_publish)

    pro = sub.add_parser("promote", help="point an alias (e.g. production) at a version",
                         description="Refuses a version whose evaluation misses the quality gate (the standard "
                         "targets and the robustness suite's), unless --force --by NAME: a forced promotion is "
                         "itself a signed rollout record naming who. Promoting the canary's version to "
                         "production finishes the canary. Workers follow the alias within MODEL_POLL_S.")
    pro.add_argument("version")
    pro.add_argument("--alias", required=True, help="alias to point, e.g. production or canary")
    pro.add_argument("--force", action="store_true", help="promote past the quality gate (needs --by)")
    pro.add_argument("--by", default=None, help="who promotes (recorded in the alias record; required with --force)")
    pro.set_defaults(func=run_promote)

    cmp_ = sub.add_parser("compare", help="a shadow's answers against production's, from the scans it scored",
                          description="Reads the shadow version's stream in Redis (recorded by the workers on "
                          "SHADOW_SHARE of scans) and reports agreement overall, by production's decision, by "
                          "sign and by store, listing scans decided differently.")
    cmp_.add_argument("--candidate", default="shadow", help="alias or version that ran as the shadow (default shadow)")
    cmp_.add_argument("--since", default=None,
                      help="ISO time (e.g. 2026-12-02T05:00:00Z) or a duration back from now (90m, 6h, 2d); "
                      "default: everything kept")
    cmp_.add_argument("--limit", type=int, default=20, help="differing scans listed (default 20)")
    cmp_.add_argument("--json", action="store_true", help="print the report as JSON")
    cmp_.set_defaults(func=run_compare)

    ev = sub.add_parser("events", help="the day's rollout records (forced promotions, rollbacks), signatures checked",
                        description="Lists events/dt=DATE/ in the models bucket: promote_forced, canary_rolled_back, "
                        "canary_finished; each record's Ed25519 signature is checked against "
                        "TENDERSCAN_AUDIT_PUBLIC_KEYS (and the own signing key's public half).")
    ev.add_argument("--date", default=None, help="YYYY-MM-DD (default today, UTC)")
    ev.add_argument("--json", action="store_true", help="one JSON object per record")
    ev.set_defaults(func=run_events)

    ls = sub.add_parser("list", help="published versions and their aliases")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=run_list)

    res = sub.add_parser("resolve", help="download a version or alias into the cache and print its path")
    res.add_argument("ref", help="alias or version (registry: prefix allowed)")
    res.add_argument("--cache-dir", default=".tenderscan/models", help="where downloads go (default .tenderscan/models)")
    res.set_defaults(func=run_resolve)


def _store():
    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore

    settings = Settings.from_env()
    return S3ObjectStore.from_settings(settings, settings.models_bucket)


def run_publish(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from workers.core.registry import Gate, publish

    ev_path = Path(args.evaluation) if args.evaluation else Path(args.checkpoint).parent / "evaluation.json"
    if not ev_path.is_file():
        raise SystemExit(f"tenderscan: error: no evaluation at {ev_path} (pass --evaluation)")
    gate = Gate(args.min_accuracy, args.max_false_reject, args.max_miss, args.max_review, args.min_sign_recall,
                args.min_subtle_caught, args.min_harsh_accuracy)
    meta = publish(_store(), args.checkpoint, args.version, json.loads(ev_path.read_text()), gate)
    print(f"published {meta['version']} ({meta['size']} bytes, sha256 {meta['sha256'][:16]}...)")
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from workers.audit.model_events import record_event
    from workers.audit.signing import signer_from_settings
    from workers.core.registry import PROMOTION_GATE, ModelRejected, alias_version, evaluation, promote
    from workers.core.settings import Settings

    settings = Settings.from_env()
    store = _store()
    if args.force and not (args.by or "").strip():
        raise SystemExit("tenderscan: error: --force needs --by NAME: a forced promotion names who forced it")
    failures = PROMOTION_GATE.check(evaluation(store, args.version))
    why = {"by": args.by.strip()} if args.by else {}
    if failures and not args.force:
        raise ModelRejected(args.version, failures)
    if failures:  # forced: the record first, so no forced alias exists without its signed record
        signer = signer_from_settings(settings)
        if signer is None:
            raise SystemExit("tenderscan: error: --force needs TENDERSCAN_AUDIT_SIGNING_KEY: a forced promotion "
                             "is a signed audit record")
        key = record_event(store, signer, "promote_forced", args.version, alias=args.alias, by=why["by"],
                           failures=failures, previous=alias_version(store, args.alias))
        why["forced"] = True
        print(f"forced past the gate by {why['by']} ({len(failures)} misses); record {key}")
    rec = promote(store, args.version, args.alias, **why)
    print(f"{rec['alias']} -> {rec['version']} (was {rec['previous'] or 'unset'})")
    canary = settings.canary_alias
    if args.alias != canary and alias_version(store, canary) == args.version:  # the canary's version made it
        promote(store, args.version, canary, reason=f"finished: promoted to {args.alias}", **why)
        key = record_event(store, signer_from_settings(settings), "canary_finished", args.version,
                           alias=args.alias, canary_alias=canary, previous=rec["previous"], **why)
        print(f"canary {args.version} finished: {canary} -> {args.version}; record {key}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    import json

    from workers.core.registry import list_models

    rows = list_models(_store())
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{'VERSION':24s} {'PUBLISHED':26s} {'ACCURACY':>9s} {'SHA256':14s} ALIASES")
    for r in rows:
        acc = r.get("summary", {}).get("accuracy")
        print(f"{r['version']:24s} {r['published_at']:26s} {acc if acc is None else f'{acc:.4f}':>9} "
              f"{r['sha256'][:12]:14s} {','.join(r['aliases'])}")
    return 0


def run_resolve(args: argparse.Namespace) -> int:
    from workers.core.registry import resolve

    print(resolve(_store(), args.ref, args.cache_dir))
    return 0


def _since_ms(text: str | None) -> int:
    import time

    from workers.core.clock import parse_time

    if not text:
        return 0
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].isdigit():
        return int((time.time() - int(text[:-1]) * units[text[-1]]) * 1000)
    value = text.replace("Z", "+00:00")
    try:
        from datetime import datetime

        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return int(parse_time(text).timestamp() * 1000)


def run_compare(args: argparse.Namespace) -> int:
    import json

    from workers.core.registry import ModelNotFound, resolve_version
    from workers.core.settings import Settings
    from workers.core.verdict_store import VerdictStore
    from workers.runtime.shadow import compare

    settings = Settings.from_env()
    try:
        version = resolve_version(_store(), args.candidate)
    except ModelNotFound:
        version = args.candidate  # a shadow alias since moved on: its stream is still there by version
    report = {"candidate": args.candidate, "version": version,
              **compare(VerdictStore.from_settings(settings).shadow_entries(version, _since_ms(args.since)),
                        args.limit)}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.candidate} ({version}): {report['scans']} scans, agreement {report['agreement']}")
    for title in ("by_decision", "by_sign", "by_store"):
        print(f"{title.replace('_', ' ')}:")
        for key, cell in report[title].items():
            print(f"  {key:32s} {cell['agree']:6d}/{cell['scans']:<6d} {cell['agreement']}")
    if report["differing"]:
        print("differing scans:")
        for d in report["differing"]:
            print(f"  {d['scan_id']} {d['tenant']}/{d['store']}: {d['decision']} -> {d['shadow_decision']} "
                  f"(p {d['p']} -> {d['shadow_p']})")
    return 0


def run_events(args: argparse.Namespace) -> int:
    """Exit 1 when a record's signature does not check out."""
    import json

    from workers.audit.model_events import read_events
    from workers.audit.signing import verifier_from_settings
    from workers.core.clock import utcnow
    from workers.core.settings import Settings

    events = read_events(_store(), args.date or utcnow()[:10], verifier_from_settings(Settings.from_env()))
    for e in events:
        if args.json:
            print(json.dumps(e, sort_keys=True))
        else:
            who = e.get("by") or ("auto-rollback" if e["action"] == "canary_rolled_back" else "")
            print(f"{e['at']}  {e['action']:20s} {e['version']:24s} {'signed' if e['signed'] else 'NOT SIGNED':10s} "
                  f"{who} {e.get('reason') or ''}".rstrip())
    return 0 if all(e["signed"] for e in events) else 1
