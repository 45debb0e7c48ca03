"""`tenderscan keyhash KEY`: the sha256 digest TENDERSCAN_API_KEYS stores for a *bootstrap* key.

Bootstrap keys are static configuration (demo, tests, benchmarks, a first operator). Tenants' own keys
(`tsk_...`, HMAC-stored, rotated and revoked without a redeploy) come from `tenderscan tenant`.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("keyhash", help="hash a bootstrap API key for TENDERSCAN_API_KEYS",
                              description="Print sha256(KEY) and the TENDERSCAN_API_KEYS entry for it (a static "
                              "bootstrap key; tenants' own keys come from `tenderscan tenant`). "
                              "Pass '-' to read the key from stdin (keeps it out of shell history).")
    p.add_argument("key", metavar="KEY", help="the API key, or '-' to read it from stdin")
    p.add_argument("--tenant", default="TENANT", help="tenant id for the printed entry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from producer.auth import key_hash

    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    if not key:
        print("tenderscan keyhash: empty key", file=sys.stderr)
        return 2
    if key.startswith("tsk_"):
        print("tenderscan keyhash: tsk_ keys are registry keys (`tenderscan tenant`); a bootstrap key in "
              "TENDERSCAN_API_KEYS must not start with tsk_", file=sys.stderr)
        return 2
    digest = key_hash(key)
    print(digest)
    print(f"TENDERSCAN_API_KEYS entry: {args.tenant}:{digest}")
    return 0
