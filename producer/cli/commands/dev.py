"""`tenderscan dev up | env | down`: a local S3 and Redis for running tenderscan by hand (producer/dev/up.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
a session:
  tenderscan dev up                       # terminal 1: prints the variables, runs until Ctrl-C
  eval "$(tenderscan dev env)"            # terminal 2: the same variables
  tenderscan api &                        # the API on 127.0.0.1:8000 (TENDERSCAN_API_URL)
  tenderscan worker &                     # a worker on the same Redis and S3
  tenderscan submit bill.jpg --store s1 --terminal pos-1 --wait   # TENDERSCAN_API_KEY: the dev tenant's key
  tenderscan dev down                     # or Ctrl-C in terminal 1
"""


def register(subparsers) -> None:
    from producer.dev import up

    p = subparsers.add_parser("dev", help="a local S3 and Redis for trying tenderscan by hand (up, env, down)",
                              description=up.__doc__, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    dir_help = f"state, logs and data of the stack (default {up.DEFAULT_DIR})"
    p.add_argument("--dir", type=Path, default=up.DEFAULT_DIR, help=dir_help)
    sub = p.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    u = sub.add_parser("up", help="start SeaweedFS and Redis, print the variables, run until Ctrl-C or `dev down`")
    u.add_argument("--redis-port", type=int, default=None, help="Redis port (default: a free one)")
    u.add_argument("--s3-port", type=int, default=None, metavar="P",
                   help="S3 port (default: a free one); SeaweedFS also listens on P-3 .. P+2 and on each + 10000")
    u.set_defaults(func=run_up)
    e = sub.add_parser("env", help="print the running stack's variables as `export` lines")
    e.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for `dev up`")
    e.set_defaults(func=run_env)
    d = sub.add_parser("down", help="stop the stack `dev up` started (in --dir) and wait until it has")
    d.set_defaults(func=run_down)
    for action in (u, e, d):  # `dev up --dir X` as well as `dev --dir X up`
        action.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)


def run_up(args: argparse.Namespace) -> int:
    from producer.dev import up

    try:
        return up.up(args.dir, redis_port=args.redis_port,
                     s3_port_base=None if args.s3_port is None else args.s3_port - 3)
    except up.DevError as exc:
        print(f"tenderscan dev: error: {exc}", file=sys.stderr)
        return 1


def run_env(args: argparse.Namespace) -> int:
    from producer.dev import up

    try:
        sys.stdout.write(up.env(args.dir, args.wait))
    except up.DevError as exc:
        print(f"tenderscan dev: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_down(args: argparse.Namespace) -> int:
    from producer.dev import up

    if up.down(args.dir):
        print("tenderscan dev: stopped", file=sys.stderr)
    else:
        print(f"tenderscan dev: no dev stack runs in {args.dir}", file=sys.stderr)
    return 0
