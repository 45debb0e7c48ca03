"""`tenderscan submit IMAGE...` and `tenderscan status ID`: the Python client from a shell.

The API URL and key come from --url / --key or TENDERSCAN_API_URL / TENDERSCAN_API_KEY.
Output is a table, or JSON lines with --json (one object per scan). --direct-upload takes the POS
path: a presigned POST per image (POST /v1/uploads), the bytes straight to S3, then the scan by
reference (producer/uploads.py).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="submit scans to the API (optionally wait for verdicts)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files")
    p.add_argument("--store", required=True, help="store_id")
    p.add_argument("--terminal", required=True, help="terminal_id")
    p.add_argument("--wait", type=float, nargs="?", const=60.0, default=None, metavar="S",
                   help="wait up to S seconds (default 60) for each verdict")
    p.add_argument("--direct-upload", action="store_true",
                   help="upload each image to S3 with a presigned POST, then submit it by reference")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the scan ids, one per line (`id=$(tenderscan submit ... -q)`)")
    _common(p)
    p.set_defaults(func=run_submit)

    s = subparsers.add_parser("status", help="a scan's state and verdict")
    s.add_argument("scan_id", metavar="ID")
    s.add_argument("--wait", type=float, default=None, metavar="S", help="wait up to S seconds for the verdict")
    _common(s)
    s.set_defaults(func=run_status)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="API base URL (default: TENDERSCAN_API_URL, else http://127.0.0.1:8000)")
    p.add_argument("--key", default=None, help="API key (default: TENDERSCAN_API_KEY)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")


def _client(args: argparse.Namespace):
    from producer.client import MissingApiKey, TenderscanClient

    try:
        return TenderscanClient.from_env(url=args.url, key=args.key, timeout=args.timeout)
    except MissingApiKey as exc:
        raise SystemExit(f"tenderscan: error: {exc}") from None


def run_submit(args: argparse.Namespace) -> int:
    from producer.client import ClientError

    rows, failed = [], 0
    with _client(args) as client:
        for path in args.images:
            try:
                submit = client.submit_direct if args.direct_upload else client.submit
                scan = submit(path, store_id=args.store, terminal_id=args.terminal)
                if args.wait is not None:
                    scan = _wait(client, scan["scan_id"], args.wait)
            except (ClientError, OSError) as exc:
                failed += 1
                scan = {"error": str(exc)}
                if args.quiet:
                    print(f"tenderscan: error: {path}: {exc}", file=sys.stderr)
            rows.append({"file": path, **scan})
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
            elif args.quiet and "scan_id" in scan:
                print(scan["scan_id"], flush=True)
    if not args.json and not args.quiet:
        _print_table(rows)
    return 1 if failed else 0


def run_status(args: argparse.Namespace) -> int:
    from producer.client import ClientError

    with _client(args) as client:
        try:
            scan = _wait(client, args.scan_id, args.wait) if args.wait else client.get(args.scan_id)
        except ClientError as exc:
            print(f"tenderscan: error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(scan))
    else:
        _print_table([scan])
    return 0


def _wait(client, scan_id: str, timeout: float) -> dict:
    """The verdict if it lands within `timeout`, else the scan's state at the deadline."""
    try:
        return client.wait(scan_id, timeout=timeout)
    except TimeoutError:
        return client.get(scan_id)


def _print_table(rows: list[dict]) -> None:
    cols = ["file", "scan_id", "status", "decision", "confidence", "reason"]
    table = [[_cell(row, c) for c in cols] for row in rows]
    shown = [c for i, c in enumerate(cols) if any(r[i] for r in table)]
    idx = [cols.index(c) for c in shown]
    widths = [max(len(shown[j]), *(len(r[i]) for r in table)) for j, i in enumerate(idx)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(shown, widths, strict=True)))
    for r in table:
        print("  ".join(r[i].ljust(w) for i, w in zip(idx, widths, strict=True)))


def _cell(row: dict, col: str) -> str:
    verdict = row.get("verdict") or {}
    if col == "status" and "error" in row:
        return "error: " + row["error"]
    if col in ("decision", "reason"):
        value = verdict.get(col)
    elif col == "confidence":
        value = verdict.get("confidence")
        value = f"{value:.3f}" if isinstance(value, float) else value
    else:
        value = row.get(col)
    return "" if value is None else str(value)
