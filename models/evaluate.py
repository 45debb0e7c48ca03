"""Evaluation of a checkpoint on a ScanSet: the numbers docs/MODEL.md reports.

    report = evaluate(ckpt, data)          # JSON-ready dict
    report["overall"]                      # every scan
    report["medium_obvious"]               # genuine + medium and obvious counterfeits (the headline targets)
    report["by_severity"][s]               # genuine + counterfeits of severity s
    report["by_denomination"][d], report["by_capture"][param][bin]

Each block holds: accuracy (p > 0.5), roc_auc, ece, and for the three-way decision review_rate,
false_reject_rate (genuine decided counterfeit, among auto-decided genuine), miss_rate
(counterfeit decided genuine, among auto-decided counterfeits), auto_accuracy, caught_rate
(counterfeits not decided genuine: review counts as caught), and per-sign recall
(sign head above its threshold, among notes carrying that sign).
"""

from __future__ import annotations

import numpy as np

from models.checkpoint import Checkpoint
from models.data import ScanSet
from models.decision import Thresholds, decide_many
from models.metrics import confusion, expected_calibration_error, rate, reliability, roc_auc
from models.train import predict_set, resolve_device

# capture parameters broken down, with bin edges
CAPTURE_BINS: dict[str, list[float]] = {
    "blur_sigma": [0.0, 0.5, 1.0, 1.5, 2.5],
    "noise_sigma": [0.0, 3.0, 6.0, 9.0, 15.0],
    "jpeg_quality": [0, 55, 70, 85, 101],
    "abs_rotation_deg": [0.0, 1.0, 3.0, 5.0, 10.0],
    "lighting": [0.0, 0.1, 0.2, 0.4],
}


def block(p: np.ndarray, y: np.ndarray, sp: np.ndarray, st: np.ndarray, decisions: np.ndarray,
          sign_names: list[str], thresholds: Thresholds) -> dict:
    """Metrics for one subset. p [n], y [n] bool, sp/st [n, S] sign probabilities / truth, decisions [n]."""
    gen, cf = ~y, y
    auto = decisions != "review"
    false_rejects = int(((decisions == "counterfeit") & gen).sum())
    misses = int(((decisions == "genuine") & cf).sum())
    sign_recall = {}
    for i, name in enumerate(sign_names):
        has = st[:, i]
        sign_recall[name] = rate(int((sp[has, i] > thresholds.sign_threshold(name)).sum()), int(has.sum()))
    return {
        "n": int(len(p)), "n_genuine": int(gen.sum()), "n_counterfeit": int(cf.sum()),
        "accuracy": rate(int(((p > 0.5) == y).sum()), len(p)),
        "roc_auc": roc_auc(p, y),
        "ece": expected_calibration_error(p, y) if len(p) else None,
        "review_rate": rate(int((~auto).sum()), len(p)),
        "false_reject_rate": rate(false_rejects, int((gen & auto).sum())),
        "miss_rate": rate(misses, int((cf & auto).sum())),
        "auto_accuracy": rate(int((auto & (((decisions == "counterfeit") & cf) | ((decisions == "genuine") & gen))).sum()),
                              int(auto.sum())),
        "caught_rate": rate(int((cf & (decisions != "genuine")).sum()), int(cf.sum())),
        "counterfeit_recall_at_0.5": rate(int((cf & (p > 0.5)).sum()), int(cf.sum())),
        "false_reject_rate_at_0.5": rate(int((gen & (p > 0.5)).sum()), int(gen.sum())),
        "sign_recall": sign_recall,
        "sign_false_alarm_on_genuine": {name: rate(int((sp[gen, i] > thresholds.sign_threshold(name)).sum()),
                                                   int(gen.sum())) for i, name in enumerate(sign_names)},
        "confusion": confusion(y, decisions),
    }


def _capture_value(ann: dict, name: str) -> float:
    c = ann["capture"]
    return abs(float(c["rotation_deg"])) if name == "abs_rotation_deg" else float(c[name])


def predict(ckpt: Checkpoint, data: ScanSet, device: str = "auto") -> dict[str, np.ndarray]:
    dev = resolve_device(device)
    ckpt.model.to(dev)
    return predict_set(ckpt.model, data, ckpt.preprocess, dev)


def evaluate(ckpt: Checkpoint, data: ScanSet, device: str = "auto", thresholds: Thresholds | None = None,
             preds: dict[str, np.ndarray] | None = None) -> dict:
    th = thresholds or ckpt.thresholds
    preds = preds or predict(ckpt, data, device)
    p, sp = preds["p_counterfeit"], preds["signs"]
    y = data.counterfeit.numpy() > 0.5
    st = data.signs.numpy() > 0.5
    decisions = decide_many(p, th)
    anns = data.annotations
    sev = np.array([a.get("severity") or "none" for a in anns])
    denom = np.array([a["denomination"] for a in anns])

    def sub(mask: np.ndarray) -> dict:
        return block(p[mask], y[mask], sp[mask], st[mask], decisions[mask], ckpt.sign_names, th)

    report = {
        "model": {"name": ckpt.name, "version": ckpt.version, "weights_sha256": ckpt.weights_sha256},
        "data": {"manifest_sha256": data.manifest_sha256, "count": len(data),
                 "captures": sorted({a["capture"]["preset"] for a in anns})},
        "thresholds": th.to_dict(),
        "overall": sub(np.ones(len(p), dtype=bool)),
        "medium_obvious": sub(~y | np.isin(sev, ["medium", "obvious"])),
        "by_severity": {s: sub(~y | (sev == s)) for s in ("subtle", "medium", "obvious") if (sev == s).any()},
        "by_denomination": {},
        "by_capture": {},
        "reliability": reliability(p, y),
    }
    pred_denom = preds["denomination"].argmax(1)
    true_denom = data.denomination.numpy()
    for d in ckpt.denominations:
        m = denom == d
        if m.any():
            report["by_denomination"][d] = {**sub(m), "denomination_accuracy": float((pred_denom[m] == true_denom[m]).mean())}
    for name, edges in CAPTURE_BINS.items():
        values = np.array([_capture_value(a, name) for a in anns])
        rows = {}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (values >= lo) & (values < hi)
            if m.any():
                b = sub(m)
                rows[f"[{lo}, {hi})"] = {k: b[k] for k in ("n", "accuracy", "review_rate", "false_reject_rate",
                                                           "miss_rate", "caught_rate")}
        report["by_capture"][name] = rows
    report["denomination_accuracy"] = float((pred_denom == true_denom).mean()) if len(p) else None
    report["_arrays"] = {"p": p, "y": y, "decisions": decisions}  # for plots; dropped by to_json
    return report


def to_json(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write_plots(report: dict, out_dir, title: str = "") -> list[str]:
    from models.plots import plot_confusion, plot_reliability, plot_roc

    a = report["_arrays"]
    return [plot_confusion(report["overall"]["confusion"], out_dir, title),
            plot_roc(a["p"], a["y"], out_dir, title),
            plot_reliability(report["reliability"], out_dir, title)]
