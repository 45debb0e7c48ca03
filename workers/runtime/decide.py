"""One scan's probabilities + the checkpoint's thresholds -> the verdict's decision fields.

    decision                 models.decision.decide(p_counterfeit): genuine | counterfeit | review
    confidence               probability of the decided class: p for counterfeit, 1 - p for genuine;
                             for review, max(p, 1 - p): how sure the model was of a call it may not make
    signs / signs_detected   every sign's probability; those above their per-sign threshold
    denomination             the most probable denomination and its probability

The rule itself lives in models/decision.py (training picks the thresholds there); this module only
maps its answer onto the contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from models.decision import COUNTERFEIT, GENUINE
from models.decision import decide as three_way

DIGITS = 6  # probabilities in verdicts are rounded: the model is not that precise, JSON stays short


@dataclass(frozen=True)
class DecisionFields:
    """The subset of schemas.Verdict that the model decides."""

    decision: str
    confidence: float
    p_counterfeit: float
    signs: dict[str, float] = field(default_factory=dict)
    signs_detected: list[str] = field(default_factory=list)
    denomination: str | None = None
    denomination_confidence: float | None = None

    def as_verdict_fields(self) -> dict[str, Any]:
        return asdict(self)


def decide(p_counterfeit: float, signs: dict[str, float], denomination: dict[str, float],
           thresholds) -> DecisionFields:
    p = float(p_counterfeit)
    decision = three_way(p, thresholds)
    if decision == COUNTERFEIT:
        confidence = p
    elif decision == GENUINE:
        confidence = 1.0 - p
    else:
        confidence = max(p, 1.0 - p)
    detected = [name for name, prob in signs.items() if prob > thresholds.sign_threshold(name)]
    best = max(denomination.items(), key=lambda kv: kv[1]) if denomination else None
    return DecisionFields(
        decision=decision,
        confidence=round(confidence, DIGITS),
        p_counterfeit=round(p, DIGITS),
        signs={name: round(float(prob), DIGITS) for name, prob in signs.items()},
        signs_detected=detected,
        denomination=best[0] if best else None,
        denomination_confidence=round(float(best[1]), DIGITS) if best else None,
    )
