import numpy as np
import pytest

from models.decision import Thresholds, decide_many
from models.evaluate import block, evaluate, negatives_block, to_json
from models.targets import check

SIGNS = ["a", "b"]


def test_block_on_a_fixture_with_known_answers():
    # 4 genuine, 4 counterfeit; thresholds 0.2 / 0.8
    p = np.array([0.05, 0.1, 0.5, 0.9, 0.95, 0.85, 0.5, 0.1])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    st = np.array([[0, 0]] * 4 + [[1, 0], [1, 1], [0, 1], [1, 0]], bool)
    sp = np.array([[0.1, 0.1]] * 4 + [[0.9, 0.1], [0.2, 0.9], [0.1, 0.9], [0.6, 0.1]])
    th = Thresholds(0.2, 0.8)
    b = block(p, y, sp, st, decide_many(p, th).astype(str), SIGNS, th)
    assert b["accuracy"] == pytest.approx(5 / 8)  # p > 0.5: genuine 0.9 wrong, cf 0.5 and 0.1 wrong
    assert b["review_rate"] == pytest.approx(2 / 8)
    assert b["false_reject_rate"] == pytest.approx(1 / 3)  # genuine auto: 0.05, 0.1, 0.9
    assert b["miss_rate"] == pytest.approx(1 / 3)  # counterfeit auto: 0.95, 0.85, 0.1
    assert b["caught_rate"] == pytest.approx(3 / 4)  # review counts as caught
    assert b["sign_recall"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(2 / 2)}
    assert b["roc_auc"] == pytest.approx(11 / 16)


def test_evaluate_end_to_end(tiny_ckpt_path):
    from models.checkpoint import load_checkpoint
    from models.data import synthesize

    ckpt = load_checkpoint(tiny_ckpt_path)
    data = synthesize(12, 3, ckpt.preprocess, workers=1, progress=False)
    rep = to_json(evaluate(ckpt, data, device="cpu"))
    assert rep["overall"]["n"] == 12 and rep["overall"]["n_counterfeit"] == 6
    assert set(rep["by_severity"]) == {"subtle", "medium", "obvious"}
    assert rep["by_severity"]["subtle"]["n_counterfeit"] == 2
    assert sum(r["n"] for r in rep["by_denomination"].values()) == 12
    assert sum(r["n"] for r in rep["by_capture"]["jpeg_quality"].values()) == 12
    rows = check({"default": rep}, 100.0, ckpt.sign_names)
    assert any(r["target"].startswith("harsh") and r["measured"] is None for r in rows)
    assert rows[-1]["met"] is True  # 100 s of training is within 20 minutes


def test_rates_over_every_scan_of_a_class_count_reviews_and_rejections():
    p = np.array([0.05, 0.9, 0.5, 0.5, 0.95, 0.1])
    y = np.array([0, 0, 0, 0, 1, 1], bool)
    d = np.array(["genuine", "counterfeit", "review", "rejected", "counterfeit", "genuine"])
    b = block(p, y, np.zeros((6, 2)), np.zeros((6, 2), bool), d, SIGNS, Thresholds(0.2, 0.8),
              confidence=np.array([0.95, 0.995, 0.5, 0.5, 0.95, 0.9]))
    assert b["genuine_called_counterfeit"] == pytest.approx(1 / 4)
    assert b["counterfeit_called_genuine"] == pytest.approx(1 / 2)
    assert b["genuine_rejected"] == pytest.approx(1 / 4) and b["rejected_rate"] == pytest.approx(1 / 6)
    assert b["confident_errors"] == pytest.approx(1 / 6)  # the genuine note called counterfeit at 0.995


def test_negatives_block_counts_answers_and_matching_reasons():
    d = np.array(["rejected", "rejected", "review", "genuine"], dtype=object)
    r = np.array(["not_a_banknote", "multiple_notes", "uncertain", None], dtype=object)
    truth = np.array(["not_a_banknote"] * 4, dtype=object)
    b = negatives_block(d, r, np.array([0.1, 0.2, 0.5, 0.01]), truth)
    assert b["rejected_rate"] == 0.5 and b["review_rate"] == 0.25 and b["genuine"] == 1
    assert b["reason_matches_kind"] == 0.5
