"""Build the shipped default model, from fixed seeds, in one command (`make model`):

    python -m models.make_default            # writes models/default/: the checkpoint, evaluation.json,
                                             # robustness.json and plots (reliability per family, gallery)

Steps: synthesize the training and validation mixtures in memory (scanner presets, scenes of 0-3 capture
families at random strengths, and the negatives the model trains on: the same scans `tenderscan dataset
generate --capture mix` writes for these seeds), train, calibrate and choose every threshold on
validation (models.train.thresholds_on), save, reload through the one loader, then evaluate on held-out
sets: the `default` and `harsh` scanner presets, and the robustness suite (models.robustness: every family
at every strength plus negative kinds never trained on, from fresh seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger("tenderscan.make_default")

SEEDS = {"train": 1001, "val": 1002, "test_default": 1003, "test_harsh": 1004, "suite": 2000}
DEFAULT_OUT = Path(__file__).resolve().parent / "default"


def build(out: Path, train_count: int, val_count: int, test_count: int, harsh_count: int, suite_per_cell: int,
          epochs: int, seed: int, workers: int, plots: bool, version: str, cache: Path | None = None,
          rethreshold: bool = False) -> dict:
    import torch

    from models import robustness
    from models.checkpoint import load_checkpoint
    from models.data import cached_synthesize
    from models.evaluate import evaluate, to_json, write_plots
    from models.synth import SIGN_NAMES
    from models.targets import check
    from models.train import (
        TrainConfig,
        TrainResult,
        fit_ood,
        resolve_device,
        save,
        thresholds_on,
        train,
        validate,
    )
    from models.transforms import PreprocessParams

    torch.set_num_threads(2)
    params = PreprocessParams()
    timings, previous = {}, {}
    path = out / "tenderscan-default.pt"
    cfg = TrainConfig(epochs=epochs, seed=seed)
    t = time.perf_counter()
    train_set = cached_synthesize(cache, train_count, SEEDS["train"], params, "mix", workers, desc="train set")
    val_set = cached_synthesize(cache, val_count, SEEDS["val"], params, "valmix", workers, desc="val set")
    timings["synthesize_train_val_s"] = round(time.perf_counter() - t, 1)
    timings["synthesize_images_per_s"] = round((train_count + val_count) / timings["synthesize_train_val_s"], 1)
    if rethreshold:  # keep the trained weights, calibrate and choose the thresholds again
        previous = json.loads((out / "evaluation.json").read_text())
        ckpt = load_checkpoint(path)
        metrics = {k: v for k, v in ckpt.metrics.items() if k not in ("history", "test")}
        dev = resolve_device("cpu")
        ood = fit_ood(ckpt.model, train_set, ckpt.preprocess, dev)
        result = TrainResult(ckpt.model, ckpt.thresholds, metrics, ckpt.metrics.get("history", []), ckpt.preprocess,
                             ckpt.data, ood)
        result.thresholds = thresholds_on(validate(ckpt.model, val_set, ckpt.preprocess, dev)[1], val_set, cfg, ood)
    else:
        result = train(train_set, val_set, cfg, params)
    del train_set
    save(result, path, name="tenderscan-default", version=version)
    ckpt = load_checkpoint(path)
    t = time.perf_counter()
    test_sets = {"default": cached_synthesize(cache, test_count, SEEDS["test_default"], params, "default", workers,
                                              desc="test set (default)"),
                 "harsh": cached_synthesize(cache, harsh_count, SEEDS["test_harsh"], params, "harsh", workers,
                                            desc="test set (harsh)")}
    suite_sets = robustness.synthesize_suite(params, suite_per_cell, SEEDS["suite"], workers, cache)
    timings["synthesize_test_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    reports = {name: evaluate(ckpt, data, device="cpu") for name, data in test_sets.items()}
    suite = robustness.evaluate_suite(ckpt, suite_sets)
    timings["evaluate_s"] = round(time.perf_counter() - t, 1)
    if rethreshold:  # the sets came from the cache: the synthesis times of the run that made them stand
        timings.update({k: v for k, v in previous.get("timings", {}).items() if k.startswith("synthesize")})
    if plots:
        for name, rep in reports.items():
            d = out / "plots" / name
            d.mkdir(parents=True, exist_ok=True)
            write_plots(rep, d, f"({name} capture)")
        robustness.plot_reliability_grid(suite, out / "plots" / "robustness-reliability.png")
        robustness.gallery(out / "plots" / "robustness-gallery.jpg")
    reports = {k: to_json(v) for k, v in reports.items()}
    targets = check(reports, result.metrics["train_wall_s"], SIGN_NAMES) + suite["targets"]
    summary = {
        "default_medium_obvious": {k: reports["default"]["medium_obvious"][k] for k in
                                   ("accuracy", "auto_accuracy", "false_reject_rate", "miss_rate", "review_rate",
                                    "sign_recall")},
        "default_subtle_caught_rate": reports["default"]["by_severity"]["subtle"]["caught_rate"],
        "harsh_medium_obvious_accuracy": reports["harsh"]["medium_obvious"]["accuracy"],
        "suite_pooled_ece": suite["pooled"]["ece"],
        "suite_targets_met": sum(1 for r in suite["targets"] if r["met"]),
        "suite_targets": len(suite["targets"]),
    }
    # the same weights, saved again with the test summary in its metrics (weights sha256 unchanged)
    digest = save(result, path, name="tenderscan-default", version=version, extra_metrics={"test": summary})
    evaluation = {
        "command": (previous.get("command", "") + "  # then: " if rethreshold else "")
        + "python -m models.make_default " + " ".join(sys.argv[1:]),
        "checkpoint": path.name,
        "weights_sha256": digest,
        "seeds": {**SEEDS, "train_init": seed},
        "counts": {"train": train_count, "val": val_count, "test_default": test_count, "test_harsh": harsh_count,
                   "suite_per_cell": suite_per_cell},
        "train": {k: v for k, v in result.metrics.items()},
        "history": result.history,
        "thresholds": result.thresholds.to_dict(),
        "timings": timings,
        "targets": targets,
        "summary": summary,
        "test": reports,
    }
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1, sort_keys=False) + "\n")
    (out / "robustness.json").write_text(json.dumps(suite, indent=1) + "\n")
    (out / "robustness.md").write_text(robustness.markdown_table(suite) + "\n" + robustness.negatives_table(suite))
    return evaluation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.make_default", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--train-count", type=int, default=28000, help="training mixture scans")
    ap.add_argument("--val-count", type=int, default=5000, help="validation mixture scans (calibration, thresholds)")
    ap.add_argument("--test-count", type=int, default=3000, help="default-capture test scans (1/3 per severity)")
    ap.add_argument("--harsh-count", type=int, default=1500)
    ap.add_argument("--suite-per-cell", type=int, default=250,
                    help="scans per family and strength in the robustness suite (3x for the negatives)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0, help="weight init and batch order")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--version", default="default-3")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--rethreshold", action="store_true",
                    help="keep the weights of OUT/tenderscan-default.pt; calibrate and choose its thresholds again")
    ap.add_argument("--cache", type=Path, default=None,
                    help="reuse synthesized sets from this folder (keyed by seed, count, capture and generator source)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ev = build(args.out, args.train_count, args.val_count, args.test_count, args.harsh_count, args.suite_per_cell,
               args.epochs, args.seed, args.workers, not args.no_plots, args.version, args.cache, args.rethreshold)
    for row in ev["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        print(f"{mark:7s} {row['target']}: {row['measured']} ({row['op']} {row['threshold']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
