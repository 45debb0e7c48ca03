"""Two checkpoints side by side (models/compare.py): differences, and what counts as worse."""

import pytest

from models.compare import SET_METRICS, compare_blocks, compare_sets, compare_suite, table, worse


def block(**kw):
    base = {"n": 100, "auto_accuracy": 0.98, "review_rate": 0.30, "genuine_called_counterfeit": 0.0,
            "counterfeit_called_genuine": 0.02, "rejected_rate": 0.01}
    return {**base, **kw}


def test_differences_and_the_direction_each_metric_should_move():
    row = compare_blocks(block(review_rate=0.10, auto_accuracy=0.95, genuine_called_counterfeit=0.005),
                         block(), SET_METRICS, tolerance=0.01)
    assert row["delta"]["review_rate"] == pytest.approx(-0.20)  # fewer reviews: better, not worse
    assert row["delta"]["auto_accuracy"] == pytest.approx(-0.03)
    assert row["worse"] == ["auto_accuracy"]  # down 3 points; false rejects up 0.5 points, within 1


def test_more_false_rejects_or_misses_beyond_tolerance_are_worse():
    row = compare_blocks(block(genuine_called_counterfeit=0.03, counterfeit_called_genuine=0.05), block(),
                         SET_METRICS, tolerance=0.01)
    assert row["worse"] == ["genuine_called_counterfeit", "counterfeit_called_genuine"]
    assert compare_blocks(block(), block(), SET_METRICS, 0.01)["worse"] == []


def test_a_metric_missing_on_either_side_has_no_difference():
    row = compare_blocks(block(auto_accuracy=None), block(), SET_METRICS, 0.01)
    assert row["delta"]["auto_accuracy"] is None and "auto_accuracy" not in row["worse"]


def test_suite_cells_and_the_worse_list():
    cell = {"auto_accuracy": 1.0, "review_rate": 0.1, "genuine_called_counterfeit": 0.0,
            "mo_counterfeit_called_genuine": 0.0, "subtle_counterfeit_called_genuine": 0.02, "n": 250}
    suite = compare_suite({"cells": {"glare/strong": {**cell, "review_rate": 0.2}}},
                          {"cells": {"glare/strong": cell}}, 0.01)
    report = {"sets": {"d": compare_blocks(block(), block(), SET_METRICS, 0.01)}, "suite": suite, "tolerance": 0.01,
              "new": {"version": "b", "weights_sha256": "2" * 64}, "baseline": {"version": "a", "weights_sha256": "1" * 64}}
    assert worse(report) == ["suite glare/strong: review_rate"]
    text = table(report)
    assert "| suite glare/strong | 250 | review | 10.0 % | 20.0 % | +10.0 | WORSE |" in text


def test_one_model_against_itself_changes_nothing(tiny_ckpt_path):
    from models.checkpoint import load_checkpoint
    from models.data import synthesize

    ckpt = load_checkpoint(tiny_ckpt_path)
    data = synthesize(8, 3, ckpt.preprocess, workers=1, progress=False)
    rep = compare_sets(ckpt, ckpt, {"default": (data, data)}, 0.01)
    row = rep["sets"]["default"]
    assert row["count"] == 8 and row["worse"] == []
    assert all(v in (0, None) for v in row["delta"].values())
