from pathlib import Path

import numpy as np

from models.metrics import reliability
from models.plots import plot_confusion, plot_reliability, plot_roc


def test_plots_are_png_files(tmp_path):
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    y = np.array([0, 0, 1, 1, 1])
    conf = {"genuine": {"genuine": 2, "review": 0, "counterfeit": 0},
            "counterfeit": {"genuine": 1, "review": 1, "counterfeit": 1}}
    paths = [plot_confusion(conf, tmp_path), plot_roc(p, y, tmp_path), plot_reliability(reliability(p, y), tmp_path)]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["confusion.png", "roc.png", "reliability.png"]
    for path in paths:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
