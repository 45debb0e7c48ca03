"""`tenderscan tenant`: tenants, their API keys and limits in the registry (s3://$S3_BUCKET/tenants/).

    tenant create T [--rate R --burst B --max-in-flight N --max-body-bytes N --max-pixels N] [--no-key]
    tenant key-add T                 a new key for rotation (the old one keeps working until revoked)
    tenant key-revoke T KEY_ID       the key stops working within TENDERSCAN_TENANT_REFRESH_S
    tenant limits T [--rate ...]     change a tenant's overrides (`--rate default` drops one)
    tenant list [--json]             tenants, key ids, created, revoked, last used; never a secret

A new key is printed ONCE, alone on stdout (so `key=$(tenderscan tenant key-add acme)` works);
everything else goes to stderr. Only its HMAC-SHA256 under TENDERSCAN_KEY_HMAC_SECRET is stored, so
the CLI needs the same secret as the API.
"""

from __future__ import annotations

import argparse
import json
import sys

LIMIT_FLAGS = {  # flag -> (TenantLimits field, type)
    "--rate": ("rate_per_s", float),
    "--burst": ("burst", int),
    "--max-in-flight": ("max_in_flight", int),
    "--max-body-bytes": ("max_body_bytes", int),
    "--max-pixels": ("max_pixels", int),
}


def register(subparsers) -> None:
    p = subparsers.add_parser("tenant", help="create tenants, add/revoke API keys, set limits, list",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)

    c = sub.add_parser("create", help="a new tenant, with its first key (printed once)")
    c.add_argument("tenant")
    c.add_argument("--no-key", action="store_true", help="create the tenant without a key")
    _limit_args(c)
    c.set_defaults(func=run_create)

    a = sub.add_parser("key-add", help="a new key for the tenant (printed once)")
    a.add_argument("tenant")
    a.set_defaults(func=run_key_add)

    r = sub.add_parser("key-revoke", help="revoke a key by its id (see `tenant list`)")
    r.add_argument("tenant")
    r.add_argument("key_id", metavar="KEY_ID")
    r.set_defaults(func=run_key_revoke)

    m = sub.add_parser("limits", help="set or reset (`default`) a tenant's limit overrides")
    m.add_argument("tenant")
    _limit_args(m, allow_default=True)
    m.set_defaults(func=run_limits)

    ls = sub.add_parser("list", help="tenants and their keys (ids only), with last use")
    ls.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    ls.set_defaults(func=run_list)


def _limit_args(p: argparse.ArgumentParser, allow_default: bool = False) -> None:
    for flag, (name, kind) in LIMIT_FLAGS.items():
        p.add_argument(flag, dest=name, default=None, type=_limit_type(kind, allow_default),
                       help=f"override the default {name}" + (" ('default' resets it)" if allow_default else ""))


def _limit_type(kind, allow_default: bool):
    def parse(raw: str):
        if allow_default and raw == "default":
            return "default"
        value = kind(raw)
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _context(makes_keys: bool = False):
    """Settings and the registry. `makes_keys`: warn when a new key's HMAC would use the development
    secret (reading, revoking and limits do not depend on it)."""
    from producer.tenants import TenantStore
    from workers.core.settings import DEV_KEY_HMAC_SECRET, Settings
    from workers.core.storage import S3ObjectStore

    settings = Settings.from_env()
    if makes_keys and settings.key_hmac_secret == DEV_KEY_HMAC_SECRET:
        print("tenderscan tenant: warning: TENDERSCAN_KEY_HMAC_SECRET is the development default; keys made "
              "now work only with an API that uses it too", file=sys.stderr)
    return settings, TenantStore(S3ObjectStore.from_settings(settings))


def _limits_from(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name, _ in LIMIT_FLAGS.values() if getattr(args, name) is not None}


def _show_key(tenant: str, key: str) -> None:
    from producer.tenants import key_id

    print(key)
    print(f"tenant {tenant}: new key {key_id(key)}… — shown once, store it now (only its HMAC is kept)",
          file=sys.stderr)


def run_create(args: argparse.Namespace) -> int:
    from producer.tenants import TenantLimits

    settings, store = _context(makes_keys=not args.no_key)
    record, key = store.create(args.tenant, settings.key_hmac_secret, TenantLimits(**_limits_from(args)),
                               with_key=not args.no_key)
    print(f"tenant {record.tenant} created", file=sys.stderr)
    if key:
        _show_key(record.tenant, key)
    return 0


def run_key_add(args: argparse.Namespace) -> int:
    settings, store = _context(makes_keys=True)
    record, key = store.add_key(args.tenant, settings.key_hmac_secret)
    _show_key(record.tenant, key)
    return 0


def run_key_revoke(args: argparse.Namespace) -> int:
    settings, store = _context()
    record = store.revoke_key(args.tenant, args.key_id)
    print(f"tenant {record.tenant}: key {args.key_id} revoked; the API refuses it within "
          f"{settings.tenant_refresh_s} s (+ one registry read)", file=sys.stderr)
    return 0


def run_limits(args: argparse.Namespace) -> int:
    _, store = _context()
    changes = {k: (None if v == "default" else v) for k, v in _limits_from(args).items()}
    record = store.set_limits(args.tenant, **changes)
    print(json.dumps({"tenant": record.tenant, "limits": _plain(record.limits)}))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from workers.core import keys
    from workers.core.verdict_store import VerdictStore

    settings, store = _context()
    records = store.all()
    verdicts = VerdictStore.from_settings(settings)
    used: dict[str, dict[str, str]] = {}
    for record in records:
        try:
            used[record.tenant] = verdicts.r.hgetall(keys.key_use_key(record.tenant))
        except Exception:  # noqa: BLE001 - last use is a convenience: show "?" when Redis is away
            used[record.tenant] = {}
            print(f"tenderscan tenant: warning: last use unknown for {record.tenant} (Redis)", file=sys.stderr)
    rows = [{"tenant": r.tenant, "key_id": k.key_id, "created_at": k.created_at, "revoked_at": k.revoked_at,
             "last_used_at": used[r.tenant].get(k.key_id)} for r in records for k in r.keys]
    if args.json:
        print(json.dumps({"tenants": [{"tenant": r.tenant, "created_at": r.created_at, "limits": _plain(r.limits)}
                                      for r in records], "keys": rows}, indent=1))
        return 0
    header = ("TENANT", "KEY ID", "CREATED", "REVOKED", "LAST USED")
    table = [header] + [(row["tenant"], row["key_id"], row["created_at"][:19], (row["revoked_at"] or "-")[:19],
                         (row["last_used_at"] or "-")[:19]) for row in rows]
    table += [(r.tenant, "(no key)", r.created_at[:19], "-", "-") for r in records if not r.keys]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _plain(limits) -> dict:
    from dataclasses import asdict

    return {k: v for k, v in asdict(limits).items() if v is not None}
