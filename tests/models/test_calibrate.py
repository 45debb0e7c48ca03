import numpy as np
import torch

from models.calibrate import OodModel, fit_temperature


def test_temperature_recovers_an_overconfident_scale():
    rng = np.random.default_rng(0)
    z_true = rng.normal(0, 2, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-z_true))
    t = fit_temperature(3.0 * z_true, y)  # a network three times too sure of itself
    assert 2.6 < t < 3.4
    assert 0.85 < fit_temperature(z_true, y) < 1.15


def test_temperature_of_a_multiclass_head():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (5000, 4))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    assert 1.6 < fit_temperature(2.0 * z, y, multiclass=True) < 2.4


def test_ood_score_is_small_for_training_like_features_and_large_far_away():
    rng = np.random.default_rng(2)
    f = np.r_[rng.normal(0, 1, (500, 8)), rng.normal(3, 1, (500, 8))]
    cls = np.r_[np.zeros(500), np.ones(500)]
    ood = OodModel.fit(f, cls)
    near = ood.score(torch.tensor(rng.normal(3, 1, (200, 8)), dtype=torch.float32))
    far = ood.score(torch.tensor(rng.normal(-6, 1, (200, 8)), dtype=torch.float32))
    assert near.median() < 2 < far.min()
    again = OodModel.from_dict(ood.to_dict())
    assert torch.allclose(again.score(torch.zeros(1, 8)), ood.score(torch.zeros(1, 8)))
