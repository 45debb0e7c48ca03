"""`tenderscan evaluate --model M --data D --json OUT [--plots DIR]`,
`tenderscan evaluate --model M --suite robustness --json OUT [--plots DIR] [--per-cell N]`, and
`tenderscan evaluate --model NEW --baseline OLD --data D [--data D2 ...] [--holdout SHARE] [--suite robustness]
--json OUT`: both models on the same scans, side by side (models/compare.py)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="metrics, decision rates and plots for a checkpoint; or the robustness suite",
        description="--data is a folder from `tenderscan dataset generate`, or synth:COUNT:SEED[:CAPTURE] to "
        "synthesize the scans in memory (CAPTURE: default, harsh, family:glare:realistic, negatives:test, ...). "
        "--suite robustness runs every capture family at every strength plus the negative kinds never trained "
        "on, from fresh seeds, and prints the per-family table (docs/MODEL.md, \"Robustness\"). "
        "With --baseline OLD: both models on every --data (repeatable) and the suite, side by side, with the "
        "changes; --holdout SHARE keeps only the held-out share of a folder's scans, the share that "
        "`tenderscan train --extra-data DIR --holdout SHARE` left out (docs/REVIEW.md, \"The loop\").",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint path")
    p.add_argument("--data", action="append", default=[],
                   help="folder, or synth:COUNT:SEED[:CAPTURE] (repeatable with --baseline)")
    p.add_argument("--suite", choices=["robustness"], help="a named suite instead of --data (with --baseline: "
                   "as well as --data)")
    p.add_argument("--baseline", metavar="CHECKPOINT",
                   help="compare --model against this checkpoint on the same scans")
    p.add_argument("--holdout", type=float, default=None, metavar="SHARE",
                   help="of a folder --data, only the held-out share (by a hash of each scan id; models/holdout.py)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="--baseline: a metric moved the wrong way by more than this share is WORSE (default 0.01)")
    p.add_argument("--fail-on-worse", action="store_true",
                   help="--baseline: exit 1 when any metric is WORSE (a gate before `tenderscan model publish`)")
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


def _data(spec: str, params, workers: int, progress, holdout: float | None = None):
    from models.data import load_folder, synthesize
    from models.holdout import Holdout

    if spec.startswith("synth:"):
        parts = spec.split(":", 3)
        if len(parts) not in (3, 4):
            raise SystemExit("tenderscan: error: --data synth:COUNT:SEED[:CAPTURE]")
        capture = parts[3] if len(parts) == 4 else "default"
        return synthesize(int(parts[1]), int(parts[2]), params, capture=capture, workers=workers, progress=progress)
    keep = None if holdout is None else Holdout(holdout, "holdout").keeps
    return load_folder(spec, params, workers, progress, keep=keep)


def _compare(args: argparse.Namespace, new, baseline) -> int:
    import json
    from pathlib import Path

    from models import compare, robustness

    progress = False if args.no_progress else None
    device = "cpu" if args.device == "auto" else args.device
    sets = {}
    for spec in args.data:
        name = spec if args.holdout is None or spec.startswith("synth:") else f"{spec} (held out {args.holdout:g})"
        data_new = _data(spec, new.preprocess, args.workers, progress, args.holdout)
        same = new.preprocess == baseline.preprocess
        sets[name] = (data_new, data_new if same else _data(spec, baseline.preprocess, args.workers, progress,
                                                            args.holdout))
    report = compare.compare_sets(new, baseline, sets, args.tolerance, device)
    if args.suite:
        seed = robustness.SUITE_SEED if args.seed is None else args.seed
        suites, cells = [], {}
        for ckpt in (new, baseline):
            key = str(sorted(ckpt.preprocess.to_dict().items()))  # the same scans, preprocessed once per view
            if key not in cells:
                cells[key] = robustness.synthesize_suite(ckpt.preprocess, args.per_cell, seed, args.workers,
                                                         progress=progress, only=args.only)
            suites.append(robustness.evaluate_suite(ckpt, cells[key], device))
        report["suite"] = compare.compare_suite(suites[0], suites[1], args.tolerance)
        report["suite_seed"], report["per_cell"] = seed, args.per_cell
    report["worse"] = compare.worse(report)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    print(compare.table(report))
    print(f"wrote {args.json_out}: " + (f"{len(report['worse'])} WORSE: " + "; ".join(report["worse"])
                                        if report["worse"] else "nothing worse"))
    return 1 if report["worse"] and args.fail_on_worse else 0


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
    if args.baseline:
        if not args.data and not args.suite:
            raise SystemExit("tenderscan: error: --baseline needs --data and/or --suite")
        try:
            baseline = load_checkpoint(args.baseline)
        except CheckpointError as exc:
            raise SystemExit(f"tenderscan: error: {exc}") from None
        return _compare(args, ckpt, baseline)
    if bool(args.suite) == bool(args.data) or len(args.data) > 1:
        raise SystemExit("tenderscan: error: give one --data or --suite (several --data only with --baseline)")
    if args.suite:
        return _suite(args, ckpt)
    data = _data(args.data[0], ckpt.preprocess, args.workers, False if args.no_progress else None, args.holdout)
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
