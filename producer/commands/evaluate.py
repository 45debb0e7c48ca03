"""`tenderscan evaluate --model M --data D --json OUT [--plots DIR]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="metrics, three-way decision rates and plots for a checkpoint",
                              description="--data is a folder from `tenderscan dataset generate`, or "
                              "synth:COUNT:SEED[:PRESET] to synthesize the scans in memory.")
    p.add_argument("--model", required=True, help="checkpoint path")
    p.add_argument("--data", required=True, help="folder, or synth:COUNT:SEED[:PRESET]")
    p.add_argument("--json", dest="json_out", required=True, help="where to write the report")
    p.add_argument("--plots", default=None, metavar="DIR", help="write confusion.png, roc.png, reliability.png")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, default=2, help="data processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _data(spec: str, params, workers: int, progress):
    from models.data import load_folder, synthesize

    if spec.startswith("synth:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise SystemExit("tenderscan: error: --data synth:COUNT:SEED[:PRESET]")
        preset = parts[3] if len(parts) == 4 else "default"
        return synthesize(int(parts[1]), int(parts[2]), params, capture=preset, workers=workers, progress=progress)
    return load_folder(spec, params, workers, progress)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.evaluate import evaluate, to_json, write_plots

    torch.set_num_threads(2)
    try:
        ckpt = load_checkpoint(args.model)
    except CheckpointError as exc:
        raise SystemExit(f"tenderscan: error: {exc}") from None
    data = _data(args.data, ckpt.preprocess, args.workers, False if args.no_progress else None)
    report = evaluate(ckpt, data, args.device)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        for path in write_plots(report, args.plots):
            print(f"wrote {path}")
    out = to_json(report)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n")
    o, mo = out["overall"], out["medium_obvious"]
    print(f"wrote {args.json_out}: {o['n']} scans, accuracy {o['accuracy']:.4f}, ROC-AUC {o['roc_auc']}, "
          f"ECE {o['ece']:.4f}")
    print(f"three-way (all severities): review {o['review_rate']:.4f}, false-reject {o['false_reject_rate']}, "
          f"miss {o['miss_rate']}; medium+obvious: accuracy {mo['accuracy']:.4f}, review {mo['review_rate']:.4f}")
    return 0
