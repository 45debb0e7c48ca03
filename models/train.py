"""Training: one loop, validation each epoch, throughput measured, thresholds chosen on validation.

    cfg = TrainConfig(epochs=..., seed=...)
    result = train(train_set, val_set, cfg)        # ScanSets from models.data
    save(result, path, ...)                        # the one checkpoint format

Device is auto: CUDA with bf16 autocast when present, else CPU (float32, channels_last).
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import structlog
import torch
from torch.nn import functional as F

from models.data import ScanSet
from models.decision import Thresholds, choose_sign_thresholds, choose_thresholds
from models.metrics import roc_auc
from models.net import BillNet, NetConfig
from models.synth import DENOMINATIONS, GENERATOR_VERSION, SIGN_NAMES
from models.transforms import PreprocessParams, normalize

log = structlog.get_logger("tenderscan.train")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    sign_weight: float = 2.0  # loss = bce(counterfeit) + sign_weight * bce(signs) + denom_weight * ce(denomination)
    denom_weight: float = 0.3
    augment: bool = True  # photometric jitter and extra sensor noise, per batch
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 2  # torch CPU threads
    max_false_reject: float = 0.005  # limits for the three-way decision thresholds
    max_miss: float = 0.005
    threshold_safety: float = 0.5  # aim the thresholds at safety x the limits on validation (see models.decision)
    sign_max_false_alarm: float = 0.005  # per-sign thresholds: false alarms allowed on notes without the sign
    net: NetConfig = field(default_factory=NetConfig)


@dataclass
class TrainResult:
    model: BillNet
    thresholds: Thresholds
    metrics: dict
    history: list[dict]
    params: PreprocessParams
    data: dict


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x float [B, 3, H, W] on the 0..1 scale: brightness, contrast and extra noise jitter."""
    b = x.shape[0]
    gain = 1.0 + 0.08 * (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1)
    bias = 0.04 * (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1)
    noise = 0.02 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return (x * gain.to(x.device) + bias.to(x.device) + noise.to(x.device)).clamp(0, 1)


def _batch(images: torch.Tensor, params: PreprocessParams, device: torch.device,
           g: torch.Generator | None = None) -> torch.Tensor:
    x = images.to(device, non_blocking=True)
    if g is not None:
        x = augment(x.float() / 255.0, g).mul(255.0)
    x = normalize(x, params)
    return x.contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.inference_mode()
def predict_set(model: BillNet, data: ScanSet, params: PreprocessParams, device: torch.device,
                batch_size: int = 128) -> dict[str, np.ndarray]:
    """Probabilities for every scan of a set: counterfeit [N], signs [N, S], denomination [N, D]."""
    model.eval()
    outs = {"p_counterfeit": [], "signs": [], "denomination": []}
    for i in range(0, len(data), batch_size):
        x = _batch(data.images[i:i + batch_size], params, device)
        with _autocast(device):
            cf, signs, denom = model(x)
        outs["p_counterfeit"].append(torch.sigmoid(cf.float()).cpu())
        outs["signs"].append(torch.sigmoid(signs.float()).cpu())
        outs["denomination"].append(torch.softmax(denom.float(), 1).cpu())
    return {k: torch.cat(v).numpy() if v else np.zeros(0) for k, v in outs.items()}


def inference_throughput(model: BillNet, params: PreprocessParams, device: torch.device, batch_size: int = 32,
                         repeats: int = 10) -> float:
    """Forward passes per second (images/s) at `batch_size`, eval mode, after warm-up."""
    model.eval()
    x = torch.randn(batch_size, 3, params.height, params.width, device=device).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(device):
        for _ in range(2):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch_size * repeats / (time.perf_counter() - t0)


def _loss(out, cf, signs, denom, cfg: TrainConfig) -> torch.Tensor:
    logit_cf, logit_signs, logit_denom = out
    return (F.binary_cross_entropy_with_logits(logit_cf.float(), cf)
            + cfg.sign_weight * F.binary_cross_entropy_with_logits(logit_signs.float(), signs)
            + cfg.denom_weight * F.cross_entropy(logit_denom.float(), denom))


def validate(model: BillNet, val: ScanSet, params: PreprocessParams,
             device: torch.device) -> tuple[dict, dict[str, np.ndarray]]:
    p = predict_set(model, val, params, device)
    y = val.counterfeit.numpy()
    sign_pred = p["signs"] > 0.5
    sign_true = val.signs.numpy() > 0.5
    return {
        "val_accuracy": float(((p["p_counterfeit"] > 0.5) == (y > 0.5)).mean()),
        "val_auc": roc_auc(p["p_counterfeit"], y),
        "val_sign_recall": {n: float(sign_pred[sign_true[:, i], i].mean()) if sign_true[:, i].any() else None
                            for i, n in enumerate(SIGN_NAMES)},
        "val_denomination_accuracy": float((p["denomination"].argmax(1) == val.denomination.numpy()).mean()),
    }, p


def thresholds_on(p: dict[str, np.ndarray], val: ScanSet, cfg: TrainConfig) -> Thresholds:
    """The three-way decision thresholds and the per-sign thresholds, from validation predictions."""
    signs = choose_sign_thresholds(p["signs"], val.signs.numpy(), SIGN_NAMES, cfg.sign_max_false_alarm)
    return choose_thresholds(p["p_counterfeit"], val.counterfeit.numpy() > 0.5, cfg.max_false_reject, cfg.max_miss,
                             sign_thresholds=signs, safety=cfg.threshold_safety)


def train(train_set: ScanSet, val_set: ScanSet, cfg: TrainConfig, params: PreprocessParams | None = None,
          progress: bool | None = None) -> TrainResult:
    from tqdm import tqdm

    params = params or PreprocessParams()
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = BillNet(cfg.net).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    log.info("train_start", device=str(device), params=model.num_params(), train=len(train_set), val=len(val_set),
             epochs=cfg.epochs)
    train_time, seen = 0.0, 0
    t_start = time.perf_counter()
    load_start = _loadavg()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=g)
        t0 = time.perf_counter()
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=progress is False, mininterval=1.0)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = _batch(train_set.images[idx], params, device, g if cfg.augment else None)
            cf, signs = train_set.counterfeit[idx].to(device), train_set.signs[idx].to(device)
            denom = train_set.denomination[idx].to(device)
            with _autocast(device):
                loss = _loss(model(x), cf, signs, denom, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        train_time += time.perf_counter() - t0
        val_metrics, _ = validate(model, val_set, params, device)
        row = {"epoch": epoch + 1, "train_loss": total / len(train_set), **val_metrics}
        history.append(row)
        log.info("epoch_done", **{k: v for k, v in row.items() if not isinstance(v, dict)})
    wall = time.perf_counter() - t_start
    val_metrics, p = validate(model, val_set, params, device)
    thresholds = thresholds_on(p, val_set, cfg)
    metrics = {
        **val_metrics,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_wall_s": round(wall, 1),
        "train_images_per_s": round(seen / train_time, 1),
        "infer_images_per_s": round(inference_throughput(model, params, device), 1),
        "num_params": model.num_params(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start_end": [load_start, _loadavg()],  # other work sharing the CPU while training
    }
    data = {"train_manifest_sha256": train_set.manifest_sha256, "val_manifest_sha256": val_set.manifest_sha256,
            "train_count": len(train_set), "val_count": len(val_set), "generator_version": GENERATOR_VERSION,
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "net"}}
    log.info("train_done", **{k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return TrainResult(model.to(memory_format=torch.contiguous_format).cpu().eval(), thresholds, metrics, history,
                       params, data)


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    try:
        v = version("tenderscan")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v


def save(result: TrainResult, path, name: str = "tenderscan", version: str = "dev", extra_metrics: dict | None = None) -> str:
    from models.checkpoint import save_checkpoint

    return save_checkpoint(path, result.model, name=name, version=version, sign_names=SIGN_NAMES,
                           denominations=DENOMINATIONS, preprocess=result.params, thresholds=result.thresholds,
                           metrics={**result.metrics, "history": result.history, **(extra_metrics or {})},
                           data=result.data, code_version=code_version(), generator_version=GENERATOR_VERSION)
