"""workers/runtime/decide.py: probabilities + thresholds -> the verdict's decision fields."""

from __future__ import annotations

import pytest

from models.decision import Thresholds
from workers.runtime.decide import decide

T = Thresholds(genuine_below=0.2, counterfeit_above=0.8, signs={"watermark": 0.5, "microprint": 0.9})
SIGNS = {"watermark": 0.6, "microprint": 0.6, "serial": 0.4}
DENOMS = {"10": 0.1, "20": 0.7, "50": 0.2}


@pytest.mark.parametrize(("p", "decision", "confidence"), [
    (0.95, "counterfeit", 0.95),
    (0.05, "genuine", 0.95),
    (0.5, "review", 0.5),
    (0.7, "review", 0.7),
    (0.3, "review", 0.7),
])
def test_decision_and_confidence_of_the_decided_class(p, decision, confidence):
    fields = decide(p, SIGNS, DENOMS, T)
    assert fields.decision == decision
    assert fields.confidence == pytest.approx(confidence)
    assert fields.p_counterfeit == pytest.approx(p)


def test_thresholds_are_strict_at_the_boundary():
    assert decide(0.8, {}, {}, T).decision == "review"
    assert decide(0.2, {}, {}, T).decision == "review"


def test_signs_detected_use_each_signs_own_threshold_and_default_half():
    fields = decide(0.9, SIGNS, DENOMS, T)
    # watermark 0.6 > 0.5; microprint 0.6 < its 0.9; serial 0.4 < the default 0.5
    assert fields.signs_detected == ["watermark"]
    assert fields.signs == SIGNS


def test_denomination_is_the_most_probable_one():
    fields = decide(0.1, SIGNS, DENOMS, T)
    assert fields.denomination == "20" and fields.denomination_confidence == pytest.approx(0.7)
    empty = decide(0.1, {}, {}, T)
    assert empty.denomination is None and empty.denomination_confidence is None


def test_fields_fit_the_verdict_schema():
    from workers.core.schemas import InputRef, Timestamps, Verdict

    fields = decide(0.123456789, SIGNS, DENOMS, T).as_verdict_fields()
    v = Verdict(scan_id="a" * 32, tenant="t", store_id="s", terminal_id="p", input=InputRef("k", "0" * 64, 1),
                timestamps=Timestamps(submitted="2026-11-28T00:00:00.000000Z"), **fields)
    assert Verdict.decode(v.encode()) == v
    assert v.p_counterfeit == 0.123457  # rounded to 6 digits
