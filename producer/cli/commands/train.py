"""`tenderscan train`: train a checkpoint from generated folders or from scans synthesized in memory."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a checkpoint",
                              description="Data: --train DIR --val DIR (folders from `tenderscan dataset generate`), "
                              "or --synth N to synthesize N training scans in memory (validation: --val-count). "
                              "Device is auto: CUDA with bf16 autocast when present, else CPU.")
    p.add_argument("--train", dest="train_dir", help="training folder (manifest.jsonl + images/)")
    p.add_argument("--val", dest="val_dir", help="validation folder")
    p.add_argument("--synth", type=int, default=0, metavar="N", help="synthesize N training scans instead")
    p.add_argument("--val-count", type=int, default=2000, help="validation scans to synthesize with --synth")
    p.add_argument("--data-seed", type=int, default=1001, help="seed of synthesized training data (val: +1)")
    p.add_argument("--capture", default="default", help="capture preset of synthesized data")
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    p.add_argument("--batch-size", type=int, default=64, help="scans per optimiser step (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="weight init and batch order")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=2, help="data processes")
    p.add_argument("--name", default="tenderscan", help="model name stored in the checkpoint")
    p.add_argument("--version", default="dev", help="model version stored in the checkpoint")
    p.add_argument("--max-false-reject", type=float, default=0.005, help="limit for the decision thresholds")
    p.add_argument("--max-miss", type=float, default=0.005, help="limit for the decision thresholds")
    p.add_argument("--threshold-safety", type=float, default=0.5,
                   help="aim the thresholds at this share of the limits on validation (1 = exactly at the limits)")
    p.add_argument("--sign-max-false-alarm", type=float, default=0.005,
                   help="per-sign thresholds: false alarms allowed among validation notes without the sign")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="fine-tune this checkpoint's weights (with its preprocessing) instead of starting afresh")
    p.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                   help="a folder mixed into the training set, e.g. from `tenderscan dataset from-reviews` "
                        "(repeatable); its manifest sha256 and size are recorded in the checkpoint")
    p.add_argument("--keep-thresholds", action="store_true",
                   help="with --init-from: keep its decision thresholds, temperatures and out-of-distribution "
                        "statistics instead of choosing them again on this run's validation set (a small "
                        "fine-tune's validation set is too small to place a 0.5 %% error limit)")
    p.add_argument("--holdout", type=float, default=0.0, metavar="SHARE",
                   help="leave out of --extra-data the share of scans that `tenderscan evaluate --data DIR "
                        "--holdout SHARE` measures on (chosen by a hash of each scan id; default 0: use all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import load_checkpoint
    from models.data import concat, load_folder, synthesize
    from models.holdout import Holdout
    from models.train import TrainConfig, save, train
    from models.transforms import PreprocessParams

    if not args.synth and not (args.train_dir and args.val_dir):
        raise SystemExit("tenderscan: error: give --train DIR and --val DIR, or --synth N")
    torch.set_num_threads(args.threads)
    init = load_checkpoint(args.init_from) if args.init_from else None
    params = init.preprocess if init else PreprocessParams()
    progress = False if args.no_progress else None
    if args.synth:
        train_set = synthesize(args.synth, args.data_seed, params, capture=args.capture, workers=args.workers,
                               progress=progress, desc="train set")
        val_set = synthesize(args.val_count, args.data_seed + 1, params, capture=args.capture,
                             workers=args.workers, progress=progress, desc="val set")
    else:
        train_set = load_folder(args.train_dir, params, args.workers, progress)
        val_set = load_folder(args.val_dir, params, args.workers, progress)
    try:
        split = Holdout(args.holdout, "train")
    except ValueError as exc:
        raise SystemExit(f"tenderscan: error: --holdout: {exc}") from None
    extras = [load_folder(d, params, args.workers, progress, keep=split.keeps) for d in args.extra_data]
    if extras:
        train_set = concat(train_set, *extras)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      device=args.device, threads=args.threads, max_false_reject=args.max_false_reject,
                      max_miss=args.max_miss, threshold_safety=args.threshold_safety,
                      sign_max_false_alarm=args.sign_max_false_alarm)
    result = train(train_set, val_set, cfg, params, progress, init=init.model if init else None)
    if args.keep_thresholds:
        if not init:
            raise SystemExit("tenderscan: error: --keep-thresholds needs --init-from")
        result.thresholds, result.ood = init.thresholds, init.ood
        result.data["kept_thresholds_from_init"] = True
    if init:
        result.data["init_from"] = {"name": init.name, "version": init.version, "weights_sha256": init.weights_sha256}
    if extras:
        result.data["extra_data"] = [{"dir": d, "manifest_sha256": e.manifest_sha256, "count": len(e),
                                      "holdout": split.to_dict()}
                                     for d, e in zip(args.extra_data, extras, strict=True)]
    digest = save(result, args.out, name=args.name, version=args.version)
    m = result.metrics
    print(f"wrote {args.out} (weights sha256 {digest[:16]}...)")
    print(f"train wall {m['train_wall_s']} s, train {m['train_images_per_s']} img/s, "
          f"inference {m['infer_images_per_s']} img/s on {m['device_name']}")
    print(f"validation: accuracy {m['val_accuracy']:.4f}, ROC-AUC {m['val_auc']:.4f}; thresholds "
          f"genuine < {result.thresholds.genuine_below:.4f}, counterfeit > {result.thresholds.counterfeit_above:.4f}")
    return 0
