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
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import structlog
import torch
from torch.nn import functional as F

from models.calibrate import OodModel, fit_temperature
from models.data import ScanSet
from models.decision import Thresholds, choose_sign_thresholds, choose_thresholds, cost_bounds
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
    max_false_reject: float = 0.01  # limits for the three-way decision thresholds (x threshold_safety)
    max_miss: float = 0.01  # medium and obvious counterfeits decided genuine, among auto-decided ones
    max_subtle_miss: float = 0.05  # subtle counterfeits decided genuine (issue 12's targets, x threshold_safety)
    threshold_safety: float = 0.5  # aim the thresholds at safety x the limits on validation (see models.decision)
    # what a wrong automatic answer costs, in reviews (a person's minute): with a calibrated p, calling a
    # note counterfeit only pays when (1 - p) * false_reject_cost < 1, genuine when p * miss_cost < 1. These
    # bound the validation-chosen cut points (models.decision.cost_bounds): refusing a genuine customer is
    # the worst answer tenderscan can give, and validation captures are never as varied as a till's.
    false_reject_cost: float = 10.0
    miss_cost: float = 5.0
    sign_max_false_alarm: float = 0.005  # per-sign thresholds: false alarms allowed on notes without the sign
    kind_weight: float = 0.5  # loss weight of the kind head (note / not a banknote / fragment / several)
    net: NetConfig = field(default_factory=lambda: NetConfig(num_kinds=4, symmetric=True))


@dataclass
class TrainResult:
    model: BillNet
    thresholds: Thresholds
    metrics: dict
    history: list[dict]
    params: PreprocessParams
    data: dict
    ood: OodModel | None = None


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
    """x float [B, 3, H, W] on the 0..1 scale, after the canonical view: what its corrections leave behind
    (brightness +-12 %, offset, a residual colour error of +-3 % per channel, extra noise), and half of
    the views turned 180° (the view cannot tell upside down from upright; `BillNet.symmetric` averages
    over both in eval mode)."""
    b = x.shape[0]
    gain = 1.0 + 0.12 * (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1)
    tint = 1.0 + 0.03 * (torch.rand(b, 3, 1, 1, generator=g) * 2 - 1)
    bias = 0.04 * (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1)
    noise = 0.02 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    x = (x * (gain * tint).to(x.device) + bias.to(x.device) + noise.to(x.device)).clamp(0, 1)
    turn = (torch.rand(b, generator=g) < 0.5).to(x.device)
    return torch.where(turn[:, None, None, None], x.flip(2, 3), x)


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
    """Raw outputs for every scan of a set (no calibration): counterfeit logit [N] and probability [N],
    signs [N, S], denomination [N, D], kind logits [N, K] (when the net has a kind head), features [N, F]."""
    model.eval()
    outs: dict[str, list] = {"logit_cf": [], "signs": [], "denomination": [], "kind_logits": [], "features": []}
    for i in range(0, len(data), batch_size):
        x = _batch(data.images[i:i + batch_size], params, device)
        with _autocast(device):
            out = model(x)
        outs["logit_cf"].append(out.counterfeit.float().cpu())
        outs["signs"].append(torch.sigmoid(out.signs.float()).cpu())
        outs["denomination"].append(torch.softmax(out.denomination.float(), 1).cpu())
        if out.kind is not None:
            outs["kind_logits"].append(out.kind.float().cpu())
        outs["features"].append(out.features.float().cpu())
    res = {k: torch.cat(v).numpy() for k, v in outs.items() if v}
    res["p_counterfeit"] = 1.0 / (1.0 + np.exp(-res["logit_cf"])) if "logit_cf" in res else np.zeros(0)
    return res


def inference_throughput(model: BillNet, params: PreprocessParams, device: torch.device, batch_size: int = 32,
                         repeats: int = 10) -> float:
    """Forward passes per second (images/s) at `batch_size`, eval mode, after warm-up."""
    model.eval()
    x = torch.randn(batch_size, 3, params.height, params.width, device=device).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(device):
        for _ in range(2):  # in eval mode: both orientations when the net is symmetric
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch_size * repeats / (time.perf_counter() - t0)


def _loss(out, cf, signs, denom, kind, cfg: TrainConfig) -> torch.Tensor:
    """Counterfeit, signs and denomination on the scans that show one whole note; kind on every scan."""
    note = kind == 0
    loss = cfg.kind_weight * F.cross_entropy(out.kind.float(), kind) if out.kind is not None else 0.0
    if note.any():
        loss = loss + (F.binary_cross_entropy_with_logits(out.counterfeit.float()[note], cf[note])
                       + cfg.sign_weight * F.binary_cross_entropy_with_logits(out.signs.float()[note], signs[note])
                       + cfg.denom_weight * F.cross_entropy(out.denomination.float()[note], denom[note]))
    return loss


def validate(model: BillNet, val: ScanSet, params: PreprocessParams,
             device: torch.device) -> tuple[dict, dict[str, np.ndarray]]:
    p = predict_set(model, val, params, device)
    note = val.is_note.numpy()
    y = val.counterfeit.numpy()[note]
    pc = p["p_counterfeit"][note]
    sign_pred = p["signs"][note] > 0.5
    sign_true = val.signs.numpy()[note] > 0.5
    metrics = {
        "val_accuracy": float(((pc > 0.5) == (y > 0.5)).mean()) if len(y) else None,
        "val_auc": roc_auc(pc, y) if len(y) else None,
        "val_sign_recall": {n: float(sign_pred[sign_true[:, i], i].mean()) if sign_true[:, i].any() else None
                            for i, n in enumerate(SIGN_NAMES)},
        "val_denomination_accuracy": float((p["denomination"][note].argmax(1)
                                            == val.denomination.numpy()[note]).mean()) if len(y) else None,
    }
    if "kind_logits" in p:
        metrics["val_kind_accuracy"] = float((p["kind_logits"].argmax(1) == val.kind.numpy()).mean())
    return metrics, p


def train(train_set: ScanSet, val_set: ScanSet, cfg: TrainConfig, params: PreprocessParams | None = None,
          progress: bool | None = None, init: BillNet | None = None) -> TrainResult:
    """`init`: fine-tune these weights (a loaded checkpoint's model, trained with the same `params`)
    instead of starting from a fresh BillNet(cfg.net)."""
    from tqdm import tqdm

    params = params or PreprocessParams()
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = (init if init is not None else BillNet(cfg.net)).to(device).to(memory_format=torch.channels_last)
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
            denom, kind = train_set.denomination[idx].to(device), train_set.kind[idx].to(device)
            with _autocast(device):
                loss = _loss(model(x), cf, signs, denom, kind, cfg)
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
    ood = fit_ood(model, train_set, params, device)
    thresholds = thresholds_on(p, val_set, cfg, ood)
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
                       params, data, ood)


def fit_ood(model: BillNet, data: ScanSet, params: PreprocessParams, device: torch.device) -> OodModel:
    """The out-of-distribution statistics from the training notes' features (genuine and counterfeit)."""
    p = predict_set(model, data, params, device)
    note = data.is_note.numpy()
    return OodModel.fit(p["features"][note], data.counterfeit.numpy()[note] > 0.5)


def thresholds_on(p: dict[str, np.ndarray], val: ScanSet, cfg: TrainConfig, ood: OodModel | None = None) -> Thresholds:
    """Every threshold of the decision (models.decision.decide_scan), from validation predictions:
    temperatures, the kind gates, the out-of-distribution gate, then the three-way cut points on the
    validation notes that pass the gates, and the per-sign thresholds."""
    from models.calibrate import choose_gates

    note = val.is_note.numpy()
    signs = choose_sign_thresholds(p["signs"][note], val.signs.numpy()[note], SIGN_NAMES, cfg.sign_max_false_alarm)
    t_cf = fit_temperature(p["logit_cf"][note], val.counterfeit.numpy()[note])
    gates = choose_gates(p, val, ood, cfg.max_false_reject)
    passed = note & gates.pop("_passed")
    p_cal = 1.0 / (1.0 + np.exp(-p["logit_cf"] / t_cf))
    subtle = np.array([a.get("severity") == "subtle" for a in val.annotations])
    th = choose_thresholds(p_cal[passed], val.counterfeit.numpy()[passed] > 0.5, cfg.max_false_reject, cfg.max_miss,
                           sign_thresholds=signs, safety=cfg.threshold_safety, subtle=subtle[passed],
                           max_subtle_miss=cfg.max_subtle_miss)
    th = cost_bounds(th, cfg.false_reject_cost, cfg.miss_cost)
    return replace(th, temperature=t_cf, **gates)


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
                           data=result.data, code_version=code_version(), generator_version=GENERATOR_VERSION,
                           ood=result.ood)
