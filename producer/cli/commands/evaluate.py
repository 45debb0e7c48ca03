"""`tenderscan evaluate --model M --data D --json OUT [--plots DIR]`, and
`tenderscan evaluate --model M --suite robustness --json OUT [--plots DIR] [--per-cell N]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="metrics, decision rates and plots for a checkpoint; or the robustness suite",
        description="--data is a folder from `tenderscan dataset generate`, or synth:COUNT:SEED[:CAPTURE] to "
        "synthesize the scans in memory (CAPTURE: default, harsh, family:glare:realistic, negatives:test, ...). "
        "--suite robustness runs every capture family at every strength plus the negative kinds never trained "
        "on, from fresh seeds, and prints the per-family table (docs/MODEL.md, \"Robustness\").",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint path")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder, or synth:COUNT:SEED[:CAPTURE]")
    src.add_argument("--suite", choices=["robustness"], help="a named suite instead of --data")
    p.add_argument("--json", dest="json_out", required=True, help="where to write the report")
    p.add_argument("--plots", default=None, metavar="DIR",
                   help="with --data: confusion.png, roc.png, reliability.png; with --suite: "
                   "robustness-reliability.png (one diagram per family) and robustness-gallery.jpg")
    p.add_argument("--per-cell", type=int, default=300,
                   help="--suite: scans per family and strength (3x for the negatives; default 300)")
    p.add_argument("--seed", type=int, default=None, help="--suite: first seed (default: the shipped model's "
                   "suite seed, 2000); a different seed gives fresh scans")
    p.add_argument("--only", nargs="*", default=None, metavar="FAMILY",
                   help="--suite: only these families (and 'negatives')")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, default=2, help="data processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _data(spec: str, params, workers: int, progress):
    from models.data import load_folder, synthesize

    if spec.startswith("synth:"):
        parts = spec.split(":", 3)
        if len(parts) not in (3, 4):
            raise SystemExit("tenderscan: error: --data synth:COUNT:SEED[:CAPTURE]")
        capture = parts[3] if len(parts) == 4 else "default"
        return synthesize(int(parts[1]), int(parts[2]), params, capture=capture, workers=workers, progress=progress)
    return load_folder(spec, params, workers, progress)


def _suite(args: argparse.Namespace, ckpt) -> int:
    import json
    from pathlib import Path

    from models import robustness

    seed = robustness.SUITE_SEED if args.seed is None else args.seed
    sets = robustness.synthesize_suite(ckpt.preprocess, args.per_cell, seed, args.workers,
                                       progress=False if args.no_progress else None, only=args.only)
    report = robustness.evaluate_suite(ckpt, sets, "cpu" if args.device == "auto" else args.device)
    report["seed"], report["per_cell"] = seed, args.per_cell
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        print(f"wrote {robustness.plot_reliability_grid(report, Path(args.plots) / 'robustness-reliability.png')}")
        print(f"wrote {robustness.gallery(Path(args.plots) / 'robustness-gallery.jpg')}")
    print(robustness.markdown_table(report))
    print(robustness.negatives_table(report))
    met = [r for r in report["targets"] if r["met"] is not None]
    print(f"wrote {args.json_out}: {sum(r['met'] for r in met)} of {len(met)} targets met; pooled ECE "
          f"{report['pooled']['ece']}")
    for row in met:
        if not row["met"]:
            print(f"  MISSED {row['target']}: {row['measured']} ({row['op']} {row['threshold']})")
    return 0


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
    if args.suite:
        return _suite(args, ckpt)
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
    if o["n"]:
        print(f"wrote {args.json_out}: {o['n']} notes, accuracy {o['accuracy']:.4f}, ROC-AUC {o['roc_auc']}, "
              f"ECE {o['ece']:.4f}")
        print(f"decisions (all severities): review {o['review_rate']:.4f}, rejected {o['rejected_rate']:.4f}, "
              f"genuine called counterfeit {o['genuine_called_counterfeit']}, counterfeit called genuine "
              f"{o['counterfeit_called_genuine']}; medium+obvious: accuracy on auto-decided {mo['auto_accuracy']}, "
              f"review {mo['review_rate']:.4f}")
    if "negatives" in out:
        n = out["negatives"]
        print(f"{n['n']} scans that are not one whole note: rejected {n['rejected_rate']:.4f}, review "
              f"{n['review_rate']:.4f}, called genuine {n['genuine']}, called counterfeit {n['counterfeit']}")
    return 0
