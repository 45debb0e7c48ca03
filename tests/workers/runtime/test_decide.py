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


GATED = Thresholds(genuine_below=0.2, counterfeit_above=0.8, note_reject=0.3, note_accept=0.7, ood_review=4.0)
NOTE = {"note": 0.97, "not_a_banknote": 0.01, "note_incomplete": 0.01, "multiple_notes": 0.01}


def test_a_scan_the_kind_head_rejects_carries_its_reason_and_no_call():
    card = {"note": 0.02, "not_a_banknote": 0.95, "note_incomplete": 0.02, "multiple_notes": 0.01}
    fields = decide(0.999, SIGNS, DENOMS, GATED, kind=card, ood=1.0)
    assert (fields.decision, fields.reason) == ("rejected", "not_a_banknote")
    assert fields.confidence == pytest.approx(0.95)
    assert fields.signs_detected == [] and fields.denomination is None  # no call on a scan that is no note


def test_review_says_why():
    from models.decision import Seen

    assert decide(0.5, SIGNS, DENOMS, GATED, kind=NOTE, ood=1.0).reason == "uncertain"
    assert decide(0.05, SIGNS, DENOMS, GATED, kind=NOTE, ood=9.0).reason == "unfamiliar_capture"
    unsure = {**NOTE, "note": 0.5, "not_a_banknote": 0.48}
    assert decide(0.05, SIGNS, DENOMS, GATED, kind=unsure, ood=1.0).reason == "not_sure_it_is_a_note"
    assert decide(0.05, SIGNS, DENOMS, GATED, kind=NOTE, ood=1.0, seen=Seen(found=False)).decision == "review"
    assert decide(0.05, SIGNS, DENOMS, GATED, kind=NOTE, ood=1.0).decision == "genuine"


def test_every_reason_the_model_can_give_is_in_the_contract():
    from models.decision import KINDS, UNCERTAIN, UNFAMILIAR, UNSURE_NOTE
    from workers.core.enums import Reason

    for reason in [*KINDS[1:], UNCERTAIN, UNFAMILIAR, UNSURE_NOTE]:
        assert Reason(reason).value == reason
