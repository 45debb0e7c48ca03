"""`tenderscan audit`: sign, seal, verify and take away the audit records (docs/AUDIT.md).

    tenderscan audit keygen                         a new Ed25519 signing key (private + public, hex)
    tenderscan audit seal [--date D] [--tenant T]   write the signed day manifest(s); cron, daily, for yesterday
    tenderscan audit verify --tenant T --from D --to D   signatures + manifests; exit 1 on any problem
    tenderscan audit pull --tenant T --from D --to D --out FILE [--store S] [--decision D]
    tenderscan audit report --tenant T --from D --to D [--png FILE] [--json]
    tenderscan audit protect [--mode M] [--days N]  versioning + Object Lock on the bucket (admin keys)

Auditors need only read access to verdicts/ and manifests/ and the published public keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _range(p: argparse.ArgumentParser, tenant_required: bool = True) -> None:
    p.add_argument("--tenant", required=tenant_required, help="tenant id")
    p.add_argument("--from", dest="start", required=True, metavar="DATE", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="end", required=True, metavar="DATE", help="last day, inclusive")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="sign, seal, verify, pull and report the S3 audit records",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION")

    k = asub.add_parser("keygen", help="print a new Ed25519 signing key pair")
    k.set_defaults(func=run_keygen)

    s = asub.add_parser("seal", help="write the signed manifest of a day (default: yesterday, UTC)")
    s.add_argument("--date", default=None, help="YYYY-MM-DD (default yesterday)")
    s.add_argument("--tenant", action="append", default=[], help="only this tenant (repeatable; default: all)")
    s.set_defaults(func=run_seal)

    v = asub.add_parser("verify", help="check every signature and day manifest; exit 1 on any problem")
    _range(v)
    v.add_argument("--public-key", action="append", default=[], metavar="HEX",
                   help="trust this Ed25519 public key too (besides TENDERSCAN_AUDIT_PUBLIC_KEYS)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=run_verify)

    pl = asub.add_parser("pull", help="records to JSONL, CSV or Parquet (resumable: rerun the same command)")
    _range(pl)
    pl.add_argument("--store", action="append", default=[], help="only this store_id (repeatable)")
    pl.add_argument("--decision", action="append", default=[], help="only this decision (repeatable)")
    pl.add_argument("--out", required=True, type=Path, help="FILE.jsonl, FILE.csv or FILE.parquet")
    pl.add_argument("--format", choices=["jsonl", "csv", "parquet"], default=None, help="default: from --out")
    pl.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl.set_defaults(func=run_pull)

    r = asub.add_parser("report", help="counts by day, store and decision; rates; models; a PNG chart")
    _range(r, tenant_required=False)
    r.add_argument("--store", action="append", default=[], help="only this store_id (repeatable)")
    r.add_argument("--png", type=Path, default=None, help="write a stacked bar chart per day here")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=run_report)

    pr = asub.add_parser("protect", help="enable versioning and Object Lock default retention on the bucket")
    pr.add_argument("--mode", choices=["COMPLIANCE", "GOVERNANCE"], default="COMPLIANCE",
                    help="Object Lock mode (default COMPLIANCE: not even the root user can shorten it)")
    pr.add_argument("--days", type=int, default=2555, help="default retention in days (default 7 years)")
    pr.set_defaults(func=run_protect)


def _objects():
    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore

    settings = Settings.from_env()
    return settings, S3ObjectStore.from_settings(settings)


def run_keygen(args: argparse.Namespace) -> int:
    from workers.audit.signing import generate_key, key_id

    seed, public = generate_key()
    print(f"TENDERSCAN_AUDIT_SIGNING_KEY={seed}   # secret: workers and the seal job only")
    print(f"TENDERSCAN_AUDIT_PUBLIC_KEYS={public}   # publish: key id {key_id(public)}")
    return 0


def run_seal(args: argparse.Namespace) -> int:
    from workers.audit import manifests
    from workers.audit.signing import signer_from_settings
    from workers.core.errors import SettingsError

    settings, objects = _objects()
    signer = signer_from_settings(settings)
    if signer is None:
        raise SettingsError("TENDERSCAN_AUDIT_SIGNING_KEY is empty: a manifest must be signed")
    day = args.date or (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    tenants = args.tenant or manifests.tenants_of_day(objects, day)
    for tenant in tenants:
        try:
            doc = manifests.seal_day(objects, signer, day, tenant)
        except manifests.ManifestExists as exc:
            print(f"{day} {tenant}: already sealed ({exc})")
            continue
        print(f"{day} {tenant}: sealed {doc['count']} records, root {doc['root'][:16]}…, "
              f"previous {doc['prev']['date'] if doc['prev'] else 'none'}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    import dataclasses

    from workers.audit import manifests
    from workers.audit.signing import verifier_from_settings

    settings, objects = _objects()
    verifier = verifier_from_settings(settings, args.public_key)
    rep = manifests.verify_range(objects, verifier, args.tenant, args.start, args.end)
    if args.json:
        print(json.dumps({"tenant": rep.tenant, "days": rep.days, "records": rep.records,
                          "sealed_days": rep.sealed_days, "ok": rep.ok, "counts": rep.counts(),
                          "problems": [dataclasses.asdict(p) for p in rep.problems]}, indent=2))
    else:
        for p in rep.problems:
            print(f"{p.day}  {p.kind:<13} {p.subject}  {p.detail}")
        summary = ", ".join(f"{k} {n}" for k, n in sorted(rep.counts().items())) or "no problems"
        print(f"{rep.tenant}: {rep.days} days, {rep.sealed_days} sealed, {rep.records} records: {summary}")
    return 0 if rep.ok else 1


def run_pull(args: argparse.Namespace) -> int:
    from workers.audit.export import pull

    _, objects = _objects()
    n = pull(objects, args.tenant, args.start, args.end, args.out, args.format, args.store, args.decision,
             progress=not args.no_progress and sys.stderr.isatty())
    print(f"{n} records -> {args.out}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from workers.audit.export import chart, iter_rows, list_keys, report

    _, objects = _objects()
    rows = iter_rows(objects, list_keys(objects, args.tenant, args.start, args.end), set(args.store) or None)
    rep = report(rows)
    if args.png:
        chart(rep, args.png, f"{args.tenant or 'all tenants'} {args.start}..{args.end}")
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"total {rep['total']}  review rate {rep['review_rate']:.2%}  rejection rate {rep['rejection_rate']:.2%}")
        for title in ("by_decision", "models"):
            print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in rep[title].items()))
        for title in ("by_day", "by_store"):
            print(f"{title}:")
            for name, counts in rep[title].items():
                print(f"  {name}  " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def run_protect(args: argparse.Namespace) -> int:
    from workers.audit.manifests import protect_bucket

    settings, objects = _objects()
    protect_bucket(objects.client, settings.s3_bucket, args.mode, args.days)
    print(f"{settings.s3_bucket}: versioning on, Object Lock {args.mode} {args.days} days by default")
    return 0
