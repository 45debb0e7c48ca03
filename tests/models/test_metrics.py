import numpy as np
import pytest

from models.metrics import confusion, expected_calibration_error, reliability, roc_auc, roc_curve


def test_roc_auc_known_answers():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([0.1, 0.2], [1, 1]) is None


def test_roc_curve_ends():
    fpr, tpr = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_ece_known_answers():
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == 0.0
    # all predictions 0.8, half are positive: |0.5 - 0.8| = 0.3
    assert expected_calibration_error([0.8] * 4, [1, 1, 0, 0]) == pytest.approx(0.3)
    rows = reliability(np.array([0.8] * 4), np.array([1, 1, 0, 0]))
    assert rows == [{"bin": 12, "confidence": pytest.approx(0.8), "frequency": 0.5, "count": 4}]


def test_confusion_counts():
    c = confusion(np.array([0, 0, 1, 1, 1]), np.array(["genuine", "review", "counterfeit", "genuine", "review"]))
    assert c == {"genuine": {"genuine": 1, "counterfeit": 0, "review": 1, "rejected": 0},
                 "counterfeit": {"genuine": 1, "counterfeit": 1, "review": 1, "rejected": 0}}
