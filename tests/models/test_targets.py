from models.targets import check


def _reports(acc=0.999, harsh=0.98, subtle=0.95, recall=0.99):
    mo = {"accuracy": acc, "auto_accuracy": acc, "false_reject_rate": 0.001, "miss_rate": 0.002, "review_rate": 0.01,
          "sign_recall": {"watermark": recall}}
    return {"default": {"medium_obvious": mo, "by_severity": {"subtle": {"caught_rate": subtle}}},
            "harsh": {"medium_obvious": {"accuracy": harsh}}}


def test_all_met():
    rows = check(_reports(), 600.0, ["watermark"])
    assert all(r["met"] for r in rows)
    assert len(rows) == 9


def test_misses_are_flagged_with_the_measured_value():
    rows = {r["target"]: r for r in check(_reports(acc=0.99, subtle=0.5, recall=0.9), 1300.0, ["watermark"])}
    assert rows["default capture, medium+obvious: accuracy"]["met"] is False
    assert rows["default capture, medium+obvious: accuracy"]["measured"] == 0.99
    assert rows["default capture, subtle: counterfeit recall (review counts as caught)"]["met"] is False
    assert rows["default capture, medium+obvious: recall of sign watermark"]["met"] is False
    assert rows["training wall time on this CPU (s)"]["met"] is False
    assert rows["harsh capture, medium+obvious: accuracy"]["met"] is True
