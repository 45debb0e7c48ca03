"""`tenderscan dataset generate`: synthetic, annotated scans to a folder or an s3://bucket/prefix.
`tenderscan dataset from-reviews`: the scans people reviewed (docs/REVIEW.md) as a folder in the same
layout, the human label on each line beside the reviewer and the model's own answer."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="synthetic annotated bills (models/synth)")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    g = sub.add_parser("generate", help="write scans + manifest.jsonl to a folder or s3://bucket/prefix",
                       description="Deterministic: the same arguments (--seed included, default 0) give "
                       "the same bytes.")
    g.add_argument("--out", required=True, help="a folder, or s3://bucket/prefix (S3 settings from TENDERSCAN_*)")
    g.add_argument("--count", type=int, required=True, help="number of scans")
    g.add_argument("--seed", type=int, default=0,
                   help="generator seed (default 0); scan i is drawn from rng([seed, i])")
    g.add_argument("--counterfeit-ratio", type=float, default=0.5, help="share of counterfeits (default 0.5)")
    g.add_argument("--capture", default="default",
                   help="what the scans show: a scanner preset (clean, default, harsh); mix (the training "
                   "mixture: presets, scenes of 0-3 capture families, negatives); family:NAME:STRENGTH (one "
                   "robustness family, e.g. family:glare:realistic; strengths mild, realistic, strong); "
                   "negatives:train|test or negative:KIND (scans that are not one whole note). "
                   "docs/MODEL.md lists the families and kinds")
    g.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=run)
    r = sub.add_parser("from-reviews", help="reviewed scans (review records in S3) to images/ + manifest.jsonl",
                       description="Reads reviews/dt=.../ in TENDERSCAN_S3_BUCKET (S3 settings from TENDERSCAN_*); "
                       "the folder loads like a generated one (`tenderscan train --extra-data DIR`).")
    r.add_argument("--since", required=True, help="first review date, YYYY-MM-DD (UTC)")
    r.add_argument("--until", help="last review date, YYYY-MM-DD (default: today, UTC)")
    r.add_argument("--tenant", help="one tenant's reviews only (default: every tenant's)")
    r.add_argument("--out", required=True, help="a folder")
    r.set_defaults(func=run_from_reviews)


def _s3_sink(url: str):
    from concurrent.futures import ThreadPoolExecutor

    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore, parse_s3_url

    bucket, prefix = parse_s3_url(url)
    store = S3ObjectStore.from_settings(Settings.from_env(), bucket)
    pool = ThreadPoolExecutor(8)
    pending = []

    def put(name: str, data: bytes) -> None:
        key = f"{prefix}/{name}" if prefix else name
        ctype = "image/jpeg" if name.endswith(".jpg") else "application/x-ndjson"
        pending.append(pool.submit(store.put, key, data, ctype))
        if len(pending) >= 64:  # bounded: surface errors early, keep memory flat
            for f in pending:
                f.result()
            pending.clear()

    def close() -> None:
        for f in pending:
            f.result()
        pool.shutdown()

    return put, close


def run(args: argparse.Namespace) -> int:
    from models.synth.dataset import capture_kinds, folder_sink, generate

    if args.capture not in capture_kinds():
        raise SystemExit(f"tenderscan: error: unknown --capture {args.capture!r}; one of: "
                         + ", ".join(capture_kinds()))
    if args.count < 1 or not 0.0 <= args.counterfeit_ratio <= 1.0:
        raise SystemExit("tenderscan: error: --count must be >= 1 and --counterfeit-ratio within [0, 1]")
    if args.out.startswith("s3://"):
        sink, close = _s3_sink(args.out)
    else:
        sink, close = folder_sink(args.out), (lambda: None)
    t0 = time.perf_counter()
    try:
        anns = generate(sink, args.count, args.seed, args.counterfeit_ratio, args.capture, args.workers,
                        progress=False if args.no_progress else None)
    finally:
        close()
    wall = time.perf_counter() - t0
    n_cf = sum(a["counterfeit"] for a in anns if a.get("kind", "note") == "note")
    n_other = sum(a.get("kind", "note") != "note" for a in anns)
    print(f"wrote {len(anns)} scans ({n_cf} counterfeit notes, {n_other} not one whole note) and manifest.jsonl "
          f"to {args.out} "
          f"in {wall:.1f} s ({len(anns) / wall:.1f} scans/s)")
    return 0


def from_reviews(objects, start: str, end: str, out, tenant: str | None = None) -> tuple[list[dict], int]:
    """Write images/ + manifest.jsonl from the review records of start..end; returns (the manifest's lines,
    reviews skipped because no denomination is known for their note). Lines in scan id order."""
    from pathlib import Path

    from models.synth.dataset import MANIFEST, manifest_line
    from workers.audit.reviews import dataset_line, read_reviews

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines, skipped = [], 0
    for review in sorted((r for _, r in read_reviews(objects, start, end, tenant)), key=lambda r: r.scan_id):
        line = dataset_line(review, f"images/{review.scan_id}{Path(review.image_key).suffix or '.jpg'}")
        if line is None:
            skipped += 1
            continue
        (out / line["file"]).write_bytes(objects.get(review.image_key).data)
        lines.append(line)
    (out / MANIFEST).write_text("".join(manifest_line(a) + "\n" for a in lines), encoding="utf-8")
    return lines, skipped


def run_from_reviews(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from workers.core.settings import Settings
    from workers.core.storage import S3ObjectStore

    until = args.until or datetime.now(UTC).strftime("%Y-%m-%d")
    objects = S3ObjectStore.from_settings(Settings.from_env())
    lines, skipped = from_reviews(objects, args.since, until, args.out, args.tenant)
    by_label: dict[str, int] = {}
    for line in lines:
        by_label[line["label"]] = by_label.get(line["label"], 0) + 1
    print(f"wrote {len(lines)} reviewed scans ({', '.join(f'{n} {k}' for k, n in sorted(by_label.items())) or 'none'}) "
          f"and manifest.jsonl to {args.out}" + (f"; skipped {skipped} notes without a denomination" if skipped else ""))
    return 0
