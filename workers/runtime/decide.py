"""One scan's model outputs + the checkpoint's thresholds -> the verdict's decision fields.

    decision, reason         models.decision.decide_scan: genuine | counterfeit | review (reason: uncertain,
                             unfamiliar_capture, not_sure_it_is_a_note) | rejected (reason: not_a_banknote,
                             note_incomplete, multiple_notes)
    confidence               probability of the decided class: p for counterfeit, 1 - p for genuine;
                             for review, max(p, 1 - p): how sure the model was of a call it may not make;
                             for rejected, the kind head's probability of the reason
    signs / signs_detected   every sign's probability; those above their per-sign threshold (none when rejected)
    denomination             the most probable denomination and its probability (none when rejected)

The rule itself lives in models/decision.py (training picks the thresholds there); this module only
maps its answer onto the contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from models.decision import COUNTERFEIT, GENUINE, KINDS, REJECTED, decide_scan

DIGITS = 6  # probabilities in verdicts are rounded: the model is not that precise, JSON stays short


@dataclass(frozen=True)
class DecisionFields:
    """The subset of schemas.Verdict that the model decides."""

    decision: str
    confidence: float | None
    p_counterfeit: float
    signs: dict[str, float] = field(default_factory=dict)
    signs_detected: list[str] = field(default_factory=list)
    denomination: str | None = None
    denomination_confidence: float | None = None
    reason: str | None = None

    def as_verdict_fields(self) -> dict[str, Any]:
        return asdict(self)


def decide(p_counterfeit: float, signs: dict[str, float], denomination: dict[str, float], thresholds,
           kind: dict[str, float] | None = None, ood: float | None = None, seen=None) -> DecisionFields:
    p = float(p_counterfeit)
    kind_p = [kind[k] for k in KINDS] if kind else None
    decision, reason = decide_scan(p, thresholds, kind_p, ood, seen)
    if decision == COUNTERFEIT:
        confidence = p
    elif decision == GENUINE:
        confidence = 1.0 - p
    elif decision == REJECTED:
        confidence = kind.get(reason) if kind and reason in kind else None
    else:
        confidence = max(p, 1.0 - p)
    judged = decision != REJECTED
    detected = [name for name, prob in signs.items() if prob > thresholds.sign_threshold(name)] if judged else []
    best = max(denomination.items(), key=lambda kv: kv[1]) if denomination and judged else None
    return DecisionFields(
        decision=decision,
        confidence=None if confidence is None else round(float(confidence), DIGITS),
        p_counterfeit=round(p, DIGITS),
        signs={name: round(float(prob), DIGITS) for name, prob in signs.items()},
        signs_detected=detected,
        denomination=best[0] if best else None,
        denomination_confidence=round(float(best[1]), DIGITS) if best else None,
        reason=reason,
    )
