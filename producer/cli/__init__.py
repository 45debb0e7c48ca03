"""`tenderscan`: one command, one subcommand module per job.

    tenderscan dataset generate   synthetic annotated bills (models/synth)
    tenderscan train              train a checkpoint
    tenderscan evaluate           metrics, thresholds and plots for a checkpoint
    tenderscan model              publish / promote / list in the S3 model registry
    tenderscan api                serve the HTTP API
    tenderscan worker             start a Celery worker with tenderscan's defaults
    tenderscan submit / status    the Python client from a shell
    tenderscan reconcile          re-enqueue accepted scans that have no verdict
    tenderscan scale-plan         workers, KEDA thresholds and Redis load for a peak
    tenderscan tenant             tenants, API keys (create, rotate, revoke) and per-tenant limits
    tenderscan webhook            signed webhooks: endpoints, secrets, delivery log, `deliver` (the loop)
    tenderscan keyhash            hash a bootstrap API key for TENDERSCAN_API_KEYS
    tenderscan bench              the throughput benchmark (docs/PERFORMANCE.md)
    tenderscan audit              seal, verify, pull and report the S3 audit records (docs/AUDIT.md)
    tenderscan dev                a local S3 and Redis for trying it by hand (up, env, down)
    tenderscan settings           the settings a service would use here; `--example` prints .env.example

Subcommand modules are imported here, but import their own heavy dependencies lazily, so
`tenderscan --help` and `tenderscan api` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> module under producer.cli.commands; each module defines register(subparsers)
COMMANDS = ["dataset", "train", "evaluate", "model", "api", "worker", "submit", "reconcile", "scale_plan", "bench", "tenant", "webhook", "keyhash", "audit",
            "dev", "settings"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenderscan",
        description="Counterfeit-banknote detection as an asynchronous service. "
        "Configuration comes from TENDERSCAN_* environment variables (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"producer.cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from workers.core.errors import TenderscanError
    from workers.core.logging import configure_logging

    # Commands' own events go to stderr; `api` and `worker` reconfigure for JSON on stdout.
    configure_logging("INFO", json_output=not sys.stderr.isatty(), stream="stderr")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise (submit, status)

    try:
        return int(args.func(args) or 0)
    except TenderscanError as exc:
        print(f"tenderscan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
