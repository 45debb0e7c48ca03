import numpy as np

from models.decision import Thresholds, choose_thresholds, decide, decide_many


def test_three_way_decision():
    th = Thresholds(genuine_below=0.1, counterfeit_above=0.9)
    assert decide(0.05, th) == "genuine"
    assert decide(0.95, th) == "counterfeit"
    assert decide(0.5, th) == "review"
    assert decide(0.1, th) == "review" and decide(0.9, th) == "review"
    assert list(decide_many(np.array([0.05, 0.5, 0.95]), th)) == ["genuine", "review", "counterfeit"]


def test_thresholds_round_trip():
    th = Thresholds(0.1, 0.8, {"watermark": 0.4})
    assert Thresholds.from_dict(th.to_dict()) == th
    assert th.sign_threshold("watermark") == 0.4 and th.sign_threshold("other") == 0.5


def test_separable_scores_need_no_review():
    p = np.r_[np.linspace(0.0, 0.3, 500), np.linspace(0.7, 1.0, 500)]
    y = np.r_[np.zeros(500, bool), np.ones(500, bool)]
    th = choose_thresholds(p, y)
    assert (decide_many(p, th) != "review").all()
    assert 0.3 < th.genuine_below <= th.counterfeit_above < 0.7 or th.genuine_below <= th.counterfeit_above


def test_overlap_goes_to_review_and_limits_hold():
    rng = np.random.default_rng(0)
    p = np.r_[rng.beta(2, 8, 2000), rng.beta(8, 2, 2000)]
    y = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    th = choose_thresholds(p, y, max_false_reject=0.005, max_miss=0.005)
    d = decide_many(p, th)
    gen_auto = ~y & (d != "review")
    cf_auto = y & (d != "review")
    assert ((d == "counterfeit") & ~y).sum() / gen_auto.sum() <= 0.005
    assert ((d == "genuine") & y).sum() / cf_auto.sum() <= 0.005
    assert 0.0 < (d == "review").mean() < 0.5
