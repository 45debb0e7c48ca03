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
import torch

from models.checkpoint import Checkpoint
from models.data import ScanSet
from models.decision import Seen, Thresholds, decide_scan
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
          sign_names: list[str], thresholds: Thresholds, confidence: np.ndarray | None = None) -> dict:
    """Metrics for one subset of notes. p [n] calibrated, y [n] bool, sp/st [n, S] sign probabilities /
    truth, decisions [n] (genuine / counterfeit / review / rejected), confidence [n] of the decided class."""
    gen, cf = ~y, y
    auto = (decisions == "genuine") | (decisions == "counterfeit")
    false_rejects = int(((decisions == "counterfeit") & gen).sum())
    misses = int(((decisions == "genuine") & cf).sum())
    conf = confidence if confidence is not None else np.where(decisions == "counterfeit", p, 1 - p)
    confident_errors = int((((decisions == "counterfeit") & gen) | ((decisions == "genuine") & cf))[conf >= 0.99].sum())
    sign_recall = {}
    for i, name in enumerate(sign_names):
        has = st[:, i]
        sign_recall[name] = rate(int((sp[has, i] > thresholds.sign_threshold(name)).sum()), int(has.sum()))
    return {
        "n": int(len(p)), "n_genuine": int(gen.sum()), "n_counterfeit": int(cf.sum()),
        "accuracy": rate(int(((p > 0.5) == y).sum()), len(p)),
        "roc_auc": roc_auc(p, y),
        "ece": expected_calibration_error(p, y) if len(p) else None,
        "review_rate": rate(int((decisions == "review").sum()), len(p)),
        "rejected_rate": rate(int((decisions == "rejected").sum()), len(p)),
        # among auto-decided scans (the three-way decision's own view)
        "false_reject_rate": rate(false_rejects, int((gen & auto).sum())),
        "miss_rate": rate(misses, int((cf & auto).sum())),
        "auto_accuracy": rate(int((auto & (((decisions == "counterfeit") & cf) | ((decisions == "genuine") & gen))).sum()),
                              int(auto.sum())),
        # among all scans of the class (what a cashier meets)
        "genuine_called_counterfeit": rate(false_rejects, int(gen.sum())),
        "counterfeit_called_genuine": rate(misses, int(cf.sum())),
        "genuine_rejected": rate(int(((decisions == "rejected") & gen).sum()), int(gen.sum())),
        "confident_errors": rate(confident_errors, len(p)),
        "caught_rate": rate(int((cf & (decisions != "genuine")).sum()), int(cf.sum())),
        "counterfeit_recall_at_0.5": rate(int((cf & (p > 0.5)).sum()), int(cf.sum())),
        "false_reject_rate_at_0.5": rate(int((gen & (p > 0.5)).sum()), int(gen.sum())),
        "sign_recall": sign_recall,
        "sign_false_alarm_on_genuine": {name: rate(int((sp[gen, i] > thresholds.sign_threshold(name)).sum()),
                                                   int(gen.sum())) for i, name in enumerate(sign_names)},
        "confusion": confusion(y, decisions),
    }


def negatives_block(decisions: np.ndarray, reasons: np.ndarray, p: np.ndarray, truth: np.ndarray) -> dict:
    """Scans that are not one whole note: how they were answered. `truth` is each scan's kind."""
    n = len(decisions)
    return {
        "n": n,
        "rejected_rate": rate(int((decisions == "rejected").sum()), n),
        "review_rate": rate(int((decisions == "review").sum()), n),
        "genuine": int((decisions == "genuine").sum()),
        "counterfeit": int((decisions == "counterfeit").sum()),
        "confident_counterfeit": int(((decisions == "counterfeit") & (p >= 0.99)).sum()),
        "reason_matches_kind": rate(int(((decisions == "rejected") & (reasons == truth)).sum()),
                                    int((decisions == "rejected").sum())),
        "reasons": {str(k): int((reasons == k).sum()) for k in sorted(set(reasons.tolist()) - {None})},
    }


def decide_all(ckpt: Checkpoint, preds: dict[str, np.ndarray], data: ScanSet,
               thresholds: Thresholds | None = None) -> dict[str, np.ndarray]:
    """Calibrated probabilities and the decision of `decide_scan` for every scan of a set."""
    th = thresholds or ckpt.thresholds
    p = 1.0 / (1.0 + np.exp(-preds["logit_cf"] / th.temperature))
    kind = None
    if "kind_logits" in preds:
        z = preds["kind_logits"] / th.kind_temperature
        kind = np.exp(z - z.max(1, keepdims=True))
        kind /= kind.sum(1, keepdims=True)
    ood = ckpt.ood.score(torch.as_tensor(preds["features"])).numpy() if ckpt.ood is not None else None
    geo = data.geometry.numpy()
    decisions, reasons = [], []
    for i in range(len(p)):
        seen = Seen(found=bool(geo[i, 0] > 0.5), notes=int(geo[i, 1]), visible_share=float(geo[i, 2]))
        d, r = decide_scan(float(p[i]), th, None if kind is None else kind[i], None if ood is None else float(ood[i]),
                           seen)
        decisions.append(d)
        reasons.append(r)
    decisions_a = np.array(decisions, dtype=object)
    conf = np.where(decisions_a == "counterfeit", p, np.where(decisions_a == "genuine", 1 - p, np.maximum(p, 1 - p)))
    return {"p": p, "kind": kind, "ood": ood, "decisions": decisions_a, "reasons": np.array(reasons, dtype=object),
            "confidence": conf}


def _capture_value(ann: dict, name: str) -> float:
    """The scanner-preset parameter `name` of a scan, NaN for a scene (conditions.py) that has none."""
    c = ann.get("capture", {})  # a reviewed scan (`dataset from-reviews`) has no capture record
    key = "rotation_deg" if name == "abs_rotation_deg" else name
    if key not in c:
        return float("nan")
    return abs(float(c[key])) if name == "abs_rotation_deg" else float(c[key])


def _capture_name(ann: dict) -> str:
    """The family or preset of a synthetic scan; a reviewed one's source ("review")."""
    c = ann.get("capture")
    return str(c.get("family", c.get("preset"))) if c else str(ann.get("source", "unknown"))


def predict(ckpt: Checkpoint, data: ScanSet, device: str = "auto") -> dict[str, np.ndarray]:
    dev = resolve_device(device)
    ckpt.model.to(dev)
    return predict_set(ckpt.model, data, ckpt.preprocess, dev)


def evaluate(ckpt: Checkpoint, data: ScanSet, device: str = "auto", thresholds: Thresholds | None = None,
             preds: dict[str, np.ndarray] | None = None) -> dict:
    th = thresholds or ckpt.thresholds
    preds = preds or predict(ckpt, data, device)
    dec = decide_all(ckpt, preds, data, th)
    kinds = np.array([a.get("kind", "note") for a in data.annotations], dtype=object)
    note = kinds == "note"
    p, sp = dec["p"], preds["signs"]
    y = data.counterfeit.numpy() > 0.5
    st = data.signs.numpy() > 0.5
    decisions, conf = dec["decisions"], dec["confidence"]
    anns = data.annotations
    sev = np.array([a.get("severity") or "none" for a in anns])
    denom = np.array([str(a.get("denomination")) for a in anns])

    def sub(mask: np.ndarray) -> dict:
        mask = mask & note
        return block(p[mask], y[mask], sp[mask], st[mask], decisions[mask], ckpt.sign_names, th, conf[mask])

    report = {
        "model": {"name": ckpt.name, "version": ckpt.version, "weights_sha256": ckpt.weights_sha256},
        "data": {"manifest_sha256": data.manifest_sha256, "count": len(data), "notes": int(note.sum()),
                 "captures": sorted({_capture_name(a) for a in anns})},
        "thresholds": th.to_dict(),
        "overall": sub(np.ones(len(p), dtype=bool)),
        "medium_obvious": sub(~y | np.isin(sev, ["medium", "obvious"])),
        "by_severity": {s: sub(~y | (sev == s)) for s in ("subtle", "medium", "obvious") if (note & (sev == s)).any()},
        "by_denomination": {},
        "by_capture": {},
        "reliability": reliability(p[note], y[note]),
        "review_reasons": {str(k): int(((decisions == "review") & (dec["reasons"] == k)).sum())
                           for k in sorted({r for r in dec["reasons"][decisions == "review"]})},
    }
    if (~note).any():
        report["negatives"] = negatives_block(decisions[~note], dec["reasons"][~note], p[~note], kinds[~note])
        report["negatives_by_kind"] = {}
        neg_kind = np.array([str(a.get("negative", a.get("kind"))) for a in anns], dtype=object)
        for k in sorted(set(neg_kind[~note].tolist())):
            m = (~note) & (neg_kind == k)
            report["negatives_by_kind"][k] = negatives_block(decisions[m], dec["reasons"][m], p[m], kinds[m])
    pred_denom = preds["denomination"].argmax(1)
    true_denom = data.denomination.numpy()
    for d in ckpt.denominations:
        m = (denom == d) & note
        if m.any():
            report["by_denomination"][d] = {**sub(m), "denomination_accuracy": float((pred_denom[m] == true_denom[m]).mean())}
    for name, edges in CAPTURE_BINS.items():
        values = np.array([_capture_value(a, name) for a in anns])
        rows = {}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (values >= lo) & (values < hi) & note
            if m.any():
                b = sub(m)
                rows[f"[{lo}, {hi})"] = {k: b[k] for k in ("n", "accuracy", "review_rate", "false_reject_rate",
                                                           "miss_rate", "caught_rate")}
        if rows:
            report["by_capture"][name] = rows
    report["denomination_accuracy"] = float((pred_denom[note] == true_denom[note]).mean()) if note.any() else None
    report["_arrays"] = {"p": p[note], "y": y[note], "decisions": decisions[note]}  # for plots; dropped by to_json
    return report


def to_json(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write_plots(report: dict, out_dir, title: str = "") -> list[str]:
    from models.plots import plot_confusion, plot_reliability, plot_roc

    a = report["_arrays"]
    return [plot_confusion(report["overall"]["confusion"], out_dir, title),
            plot_roc(a["p"], a["y"], out_dir, title),
            plot_reliability(report["reliability"], out_dir, title)]
