"""PNG plots for `tenderscan evaluate --plots DIR`: confusion matrix, ROC, reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.metrics import roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out_dir, name: str) -> str:
    fig.tight_layout()
    path = str(Path(out_dir) / name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(conf: dict[str, dict[str, int]], out_dir, title: str = "") -> str:
    plt = _pyplot()
    rows, cols = ["genuine", "counterfeit"], ["genuine", "review", "rejected", "counterfeit"]
    m = np.array([[conf[r].get(c, 0) for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.imshow(m, cmap="Blues")
    for i in range(2):
        for j in range(len(cols)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(cols)), [f"decided\n{c}" for c in cols])
    ax.set_yticks(range(2), [f"true {r}" for r in rows])
    ax.set_title(f"three-way decision {title}".strip())
    return _save(plt, fig, out_dir, "confusion.png")


def plot_roc(p: np.ndarray, y: np.ndarray, out_dir, title: str = "") -> str:
    plt = _pyplot()
    fpr, tpr = roc_curve(p, y)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("false positive rate (genuine rejected)")
    ax.set_ylabel("true positive rate (counterfeit caught)")
    ax.set_title(f"ROC {title}".strip())
    return _save(plt, fig, out_dir, "roc.png")


def plot_reliability(rows: list[dict], out_dir, title: str = "") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.plot([r["confidence"] for r in rows], [r["frequency"] for r in rows], marker="o")
    ax.set_xlabel("predicted p(counterfeit)")
    ax.set_ylabel("observed counterfeit share")
    ax.set_title(f"reliability {title}".strip())
    return _save(plt, fig, out_dir, "reliability.png")
