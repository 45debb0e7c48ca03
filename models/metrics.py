"""Plain numpy metrics, tested on tiny fixtures with known answers."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability a random positive scores above a random negative (ties count half). None if one class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tp / max(int(y.sum()), 1)]
    fpr = np.r_[0.0, fp / max(int((~y).sum()), 1)]
    return fpr, tpr


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of a binary probability: sum over equal-width bins of |accuracy - confidence| * share."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += abs(y[m].mean() - p[m].mean()) * m.mean()
    return float(ece)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per-bin mean predicted probability, observed frequency and count (for the reliability diagram)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [{"bin": b, "confidence": float(p[idx == b].mean()), "frequency": float(y[idx == b].mean()),
             "count": int((idx == b).sum())} for b in range(bins) if (idx == b).any()]


def confusion(y_true: np.ndarray, decisions: np.ndarray) -> dict[str, dict[str, int]]:
    """{true label: {decision: count}} with true in genuine/counterfeit, decision in genuine/counterfeit/review."""
    y = np.asarray(y_true).astype(bool)
    d = np.asarray(decisions)
    out = {}
    for name, mask in (("genuine", ~y), ("counterfeit", y)):
        out[name] = {k: int((d[mask] == k).sum()) for k in ("genuine", "counterfeit", "review", "rejected")}
    return out


def rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den
