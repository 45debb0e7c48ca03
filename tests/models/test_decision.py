import numpy as np
import pytest

from models.decision import (
    Thresholds,
    choose_sign_thresholds,
    choose_thresholds,
    cost_bounds,
    decide,
    decide_many,
)


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
    th = choose_thresholds(p, y, max_false_reject=0.005, max_miss=0.005, safety=1.0)
    d = decide_many(p, th)
    gen_auto = ~y & (d != "review")
    cf_auto = y & (d != "review")
    assert ((d == "counterfeit") & ~y).sum() / gen_auto.sum() <= 0.005
    assert ((d == "genuine") & y).sum() / cf_auto.sum() <= 0.005
    assert 0.0 < (d == "review").mean() < 0.5


def _rates(p, y, th):
    d = decide_many(p, th)
    frr = ((d == "counterfeit") & ~y).sum() / (~y & (d != "review")).sum()
    miss = ((d == "genuine") & y).sum() / (y & (d != "review")).sum()
    return frr, miss, (d == "review").mean()


def test_safety_margin_aims_below_the_limits_at_the_cost_of_review():
    rng = np.random.default_rng(1)
    p = np.r_[rng.beta(2, 8, 4000), rng.beta(8, 2, 4000)]
    y = np.r_[np.zeros(4000, bool), np.ones(4000, bool)]
    exact = choose_thresholds(p, y, safety=1.0)
    half = choose_thresholds(p, y, safety=0.5)
    frr_e, miss_e, review_e = _rates(p, y, exact)
    frr_h, miss_h, review_h = _rates(p, y, half)
    assert frr_h <= 0.0025 and miss_h <= 0.0025
    assert frr_e > 0.0025 or miss_e > 0.0025  # the exact cut uses the room the margin gives up
    assert review_h > review_e
    with pytest.raises(ValueError):
        choose_thresholds(p, y, safety=0.0)


def test_sign_thresholds_bound_false_alarms_and_stay_in_range():
    rng = np.random.default_rng(2)
    n = 2000
    truth = np.zeros((n, 2))
    truth[:500, 0] = 1
    truth[:1000, 1] = 1
    probs = np.empty((n, 2))
    probs[:, 0] = np.where(truth[:, 0] > 0, rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.3, n))  # overlaps 0.2..0.3
    probs[:, 1] = np.where(truth[:, 1] > 0, rng.uniform(0.8, 1.0, n), rng.uniform(0.0, 0.01, n))  # separable
    th = choose_sign_thresholds(probs, truth, ["a", "b"], max_false_alarm=0.01, floor=0.05)
    negatives_a = probs[truth[:, 0] == 0, 0]
    assert (negatives_a > th["a"]).mean() <= 0.01
    assert 0.25 < th["a"] < 0.3  # as low as the limit allows: the top 1 % of negatives lie above 0.297
    assert 0.1 < th["b"] < 0.25  # separable (0..0.01 vs 0.8..1): the logit middle of the gap, ~0.17
    lifted = choose_sign_thresholds(probs * 0 + 0.9, truth, ["a", "b"], max_false_alarm=0.01)
    assert lifted == {"a": 0.5, "b": 0.5}  # never above 0.5


def test_separable_scores_put_the_cut_in_the_middle_of_the_gap():
    """A cut at the edge of the validation scores would be crossed by the first unseen note."""
    p = np.r_[np.linspace(0.0001, 0.001, 500), np.linspace(0.995, 0.9999, 500)]
    y = np.r_[np.zeros(500, bool), np.ones(500, bool)]
    th = choose_thresholds(p, y)
    assert th.genuine_below == th.counterfeit_above  # nothing to review
    assert 0.02 < th.genuine_below < 0.9  # well inside the gap (its logit midpoint is ~0.1), not at its edges
    signs = choose_sign_thresholds(np.c_[p], np.c_[y.astype(float)], ["s"], max_false_alarm=0.005)
    assert 0.02 < signs["s"] <= 0.5


def _gated() -> Thresholds:
    return Thresholds(genuine_below=0.2, counterfeit_above=0.8, note_reject=0.3, note_accept=0.7, ood_review=5.0,
                      min_visible=0.55)


def test_decide_scan_reads_every_rule_in_order():
    from models.decision import Seen, decide_scan

    th = _gated()
    note = [0.99, 0.005, 0.003, 0.002]
    assert decide_scan(0.05, th, note, 1.0, Seen()) == ("genuine", None)
    assert decide_scan(0.95, th, note, 1.0, Seen()) == ("counterfeit", None)
    assert decide_scan(0.5, th, note, 1.0, Seen()) == ("review", "uncertain")
    assert decide_scan(0.05, th, note, 9.0, Seen()) == ("review", "unfamiliar_capture")
    assert decide_scan(0.05, th, [0.5, 0.3, 0.1, 0.1], 1.0, Seen()) == ("review", "not_sure_it_is_a_note")
    assert decide_scan(0.05, th, note, 1.0, Seen(found=False)) == ("review", "not_sure_it_is_a_note")
    assert decide_scan(0.05, th, [0.1, 0.1, 0.7, 0.1], 1.0, Seen()) == ("rejected", "note_incomplete")
    assert decide_scan(0.05, th, [0.1, 0.8, 0.05, 0.05], 1.0, Seen()) == ("rejected", "not_a_banknote")
    assert decide_scan(0.05, th, note, 1.0, Seen(notes=2)) == ("rejected", "multiple_notes")
    assert decide_scan(0.05, th, note, 1.0, Seen(visible_share=0.4)) == ("rejected", "note_incomplete")
    # a model without a kind head or an OOD score decides on p alone
    assert decide_scan(0.05, Thresholds(0.2, 0.8)) == ("genuine", None)


def test_a_scan_that_is_not_a_note_is_never_genuine_whatever_p_says():
    from models.decision import Seen, decide_scan

    th = _gated()
    rng = np.random.default_rng(0)
    for _ in range(500):
        kind = rng.dirichlet([0.3, 1, 1, 1])
        if kind[0] >= th.note_accept:
            continue
        decision, _ = decide_scan(float(rng.random()), th, kind, float(rng.random() * 10), Seen())
        assert decision in ("rejected", "review")


def test_gated_thresholds_round_trip():
    th = _gated()
    assert Thresholds.from_dict(th.to_dict()) == th
    assert Thresholds.from_dict(Thresholds().to_dict()).ood_review == float("inf")
    old = {"genuine_below": 0.3, "counterfeit_above": 0.6}  # a checkpoint from before the gates
    assert Thresholds.from_dict(old).note_accept == 0.0 and Thresholds.from_dict(old).temperature == 1.0


def test_subtle_counterfeits_have_a_limit_of_their_own():
    rng = np.random.default_rng(3)
    g = rng.beta(1, 12, 2000)  # genuine: low scores
    mo = rng.beta(12, 1, 1000)  # medium and obvious: high
    sub = rng.beta(3, 2, 1000)  # subtle: spread over the middle
    p = np.r_[g, mo, sub]
    y = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    subtle = np.r_[np.zeros(3000, bool), np.ones(1000, bool)]
    strict = choose_thresholds(p, y, 0.01, 0.01, safety=1.0)
    split = choose_thresholds(p, y, 0.01, 0.01, safety=1.0, subtle=subtle, max_subtle_miss=0.05)
    reviews = [(decide_many(p, th) == "review").mean() for th in (strict, split)]
    assert reviews[1] < reviews[0]  # allowing the hard fakes their own limit spends less review
    d = decide_many(p, split)
    assert ((d == "genuine") & subtle).sum() / max(((d != "review") & subtle).sum(), 1) <= 0.05
    assert ((d == "genuine") & y & ~subtle).sum() / max(((d != "review") & y & ~subtle).sum(), 1) <= 0.01


def test_cost_bounds_keep_a_counterfeit_call_for_scores_where_it_pays():
    th = Thresholds(genuine_below=0.3, counterfeit_above=0.56)
    out = cost_bounds(th, false_reject_cost=10.0, miss_cost=5.0)
    assert out.counterfeit_above == pytest.approx(0.9)  # a refusal pays only when (1 - p) * 10 < 1
    assert out.genuine_below == pytest.approx(0.2)  # an acceptance only when p * 5 < 1
    assert decide(0.8, out) == "review" and decide(0.8, th) == "counterfeit"
    strict = Thresholds(genuine_below=0.05, counterfeit_above=0.97)
    assert cost_bounds(strict, 10.0, 5.0) == strict  # tighter validation cut points stay as chosen
    assert cost_bounds(th, 1.0, 1.0) == th  # costs of one review or less: no bound
