"""The decision: genuine / counterfeit / review / rejected, and how its thresholds are chosen.

`decide_scan` reads, in order (the first rule that applies decides):

    the locator saw two or more notes             -> rejected, multiple_notes
    less than `min_visible` of the note in frame  -> rejected, note_incomplete
    kind head: p(note) < note_reject              -> rejected, the most probable other kind
                                                     (not_a_banknote, note_incomplete, multiple_notes)
    p(note) < note_accept, or no note-shaped
      region was found                            -> review, not_sure_it_is_a_note
    out-of-distribution score > ood_review        -> review, unfamiliar_capture
    p_counterfeit < genuine_below                 -> genuine
    p_counterfeit > counterfeit_above             -> counterfeit
    otherwise                                     -> review, uncertain

so a scan that is not one whole note of ours is never `genuine`, and a scan unlike anything the model
learned goes to a person instead of getting a confident answer. `decide` is the last three lines alone.

`choose_thresholds` picks the pair on the validation split: the smallest review rate such that,
among the scans decided automatically, the genuine false-reject rate and the counterfeit miss
rate are each at most `safety` x their limits. A rate measured on a few thousand validation scans
is noisy (at 0.5 % of 1,250 genuine notes a cut sits on 6 errors), so the default `safety` of 0.5
aims at half the limit and spends review rate to stay under it on unseen scans.

`choose_sign_thresholds` picks, per tell-tale sign, the lowest threshold (between a floor and
0.5) whose false alarms on validation notes that do not carry the sign stay within a limit: a
sign is reported as a reason when its head's probability is above its threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

GENUINE, COUNTERFEIT, REVIEW, REJECTED = "genuine", "counterfeit", "review", "rejected"
KINDS = ("note", "not_a_banknote", "note_incomplete", "multiple_notes")  # the kind head's classes
# why a scan went to review (the verdict's `reason`)
UNCERTAIN, UNFAMILIAR, UNSURE_NOTE = "uncertain", "unfamiliar_capture", "not_sure_it_is_a_note"


@dataclass(frozen=True)
class Thresholds:
    genuine_below: float = 0.5
    counterfeit_above: float = 0.5
    signs: Mapping[str, float] = field(default_factory=dict)  # sign name -> report when p > this
    max_false_reject: float = 0.005  # the limits they were chosen for (documentation only)
    max_miss: float = 0.005
    temperature: float = 1.0  # the counterfeit logit is divided by this before the sigmoid (calibration)
    kind_temperature: float = 1.0  # the kind logits likewise, before the softmax
    note_reject: float = 0.0  # p(note) below this: rejected with the most probable other kind
    note_accept: float = 0.0  # p(note) below this (and above note_reject): review
    ood_review: float = float("inf")  # out-of-distribution score above this: review
    min_visible: float = 0.55  # share of the note inside the frame below this: rejected (note_incomplete)

    def sign_threshold(self, name: str) -> float:
        return float(self.signs.get(name, 0.5))

    def to_dict(self) -> dict:
        return {"genuine_below": self.genuine_below, "counterfeit_above": self.counterfeit_above,
                "signs": dict(self.signs), "max_false_reject": self.max_false_reject, "max_miss": self.max_miss,
                "temperature": self.temperature, "kind_temperature": self.kind_temperature,
                "note_reject": self.note_reject, "note_accept": self.note_accept,
                "ood_review": self.ood_review if np.isfinite(self.ood_review) else None,
                "min_visible": self.min_visible}

    @classmethod
    def from_dict(cls, d: Mapping) -> Thresholds:
        ood = d.get("ood_review")
        return cls(genuine_below=float(d["genuine_below"]), counterfeit_above=float(d["counterfeit_above"]),
                   signs={str(k): float(v) for k, v in dict(d.get("signs", {})).items()},
                   max_false_reject=float(d.get("max_false_reject", 0.005)),
                   max_miss=float(d.get("max_miss", 0.005)), temperature=float(d.get("temperature", 1.0)),
                   kind_temperature=float(d.get("kind_temperature", 1.0)),
                   note_reject=float(d.get("note_reject", 0.0)), note_accept=float(d.get("note_accept", 0.0)),
                   ood_review=float("inf") if ood is None else float(ood),
                   min_visible=float(d.get("min_visible", 0.55)))


def decide(p_counterfeit: float, thresholds: Thresholds) -> str:
    if p_counterfeit > thresholds.counterfeit_above:
        return COUNTERFEIT
    if p_counterfeit < thresholds.genuine_below:
        return GENUINE
    return REVIEW


@dataclass(frozen=True)
class Seen:
    """What the canonical view's locator reported about a scan (models.canonical.NoteGeometry)."""

    found: bool = True
    notes: int = 1
    visible_share: float = 1.0


def geometry_reason(seen: Seen, thresholds: Thresholds) -> str | None:
    """The first two rules: what the locator saw alone rejects the scan (before any forward pass)."""
    if seen.notes >= 2:
        return "multiple_notes"
    if seen.visible_share < thresholds.min_visible:
        return "note_incomplete"
    return None


def decide_scan(p_counterfeit: float, thresholds: Thresholds, kind: Sequence[float] | None = None,
                ood: float | None = None, seen: Seen | None = None) -> tuple[str, str | None]:
    """(decision, reason): the whole rule of the module docstring. `kind` is the kind head's
    probabilities in KINDS order (None for a model without one), `ood` the out-of-distribution score."""
    if seen is not None and (reason := geometry_reason(seen, thresholds)) is not None:
        return REJECTED, reason
    if kind is not None:
        p_note = float(kind[0])
        if p_note < thresholds.note_reject:
            other = 1 + int(np.argmax(np.asarray(kind[1:], dtype=np.float64)))
            return REJECTED, KINDS[other]
        if p_note < thresholds.note_accept or (seen is not None and not seen.found):
            return REVIEW, UNSURE_NOTE
    if ood is not None and ood > thresholds.ood_review:
        return REVIEW, UNFAMILIAR
    decision = decide(p_counterfeit, thresholds)
    return decision, UNCERTAIN if decision == REVIEW else None


def decide_many(p: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Vectorised `decide`: array of "genuine" / "counterfeit" / "review"."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, REVIEW, dtype=object)
    out[p < thresholds.genuine_below] = GENUINE
    out[p > thresholds.counterfeit_above] = COUNTERFEIT
    return out


def cost_bounds(th: Thresholds, false_reject_cost: float, miss_cost: float) -> Thresholds:
    """The cut points no further apart from a sure answer than the costs of a wrong one allow.

    With costs in units of one review (a person's minute) and a calibrated p(counterfeit), answering
    `counterfeit` costs (1 - p) * false_reject_cost on average and `review` costs 1, so it only pays when
    p > 1 - 1 / false_reject_cost; likewise `genuine` only when p < 1 / miss_cost. Validation picks cut
    points that meet its limits on validation captures; these bounds keep them Bayes-sensible on captures
    validation never had (costs <= 1 leave that side as chosen)."""
    ca, gb = th.counterfeit_above, th.genuine_below
    if false_reject_cost > 1:
        ca = max(ca, 1.0 - 1.0 / false_reject_cost)
    if miss_cost > 1:
        gb = min(gb, 1.0 / miss_cost)
    return replace(th, genuine_below=min(gb, ca), counterfeit_above=ca)


def choose_thresholds(p: np.ndarray, is_counterfeit: np.ndarray, max_false_reject: float = 0.005,
                      max_miss: float = 0.005, candidates: int = 400,
                      sign_thresholds: Mapping[str, float] | None = None, safety: float = 0.5,
                      subtle: np.ndarray | None = None, max_subtle_miss: float | None = None) -> Thresholds:
    """Smallest-review-rate pair (genuine_below <= counterfeit_above) meeting the limits x `safety` on (p, y).
    With `subtle` (a mask of the subtle counterfeits) and `max_subtle_miss`, misses are limited separately:
    the other counterfeits by `max_miss`, the subtle ones by `max_subtle_miss` (a fake that is hard to see
    is allowed to slip through more often than an obvious one)."""
    if not 0.0 < safety <= 1.0:
        raise ValueError(f"safety must be in (0, 1], got {safety}")
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(is_counterfeit, dtype=bool)
    if subtle is not None and max_subtle_miss is not None:
        sub = np.asarray(subtle, dtype=bool) & y
        return _choose(p, y & ~sub, sub, max_false_reject, max_miss, max_subtle_miss, candidates,
                       sign_thresholds, safety)
    return _choose(p, y, np.zeros_like(y), max_false_reject, max_miss, max_miss, candidates, sign_thresholds, safety)


def _choose(p: np.ndarray, y: np.ndarray, sub: np.ndarray, max_false_reject: float, max_miss: float,
            max_subtle_miss: float, candidates: int, sign_thresholds, safety: float) -> Thresholds:
    """choose_thresholds over genuine (~y & ~sub), counterfeits `y` and subtle counterfeits `sub`."""
    logit_grid = 1.0 / (1.0 + np.exp(-np.linspace(-12.0, 12.0, 97)))  # cut points inside gaps between scores
    qs = np.unique(np.concatenate([np.quantile(p, np.linspace(0, 1, candidates)), logit_grid, [0.0, 0.5, 1.0]]))
    cuts = np.unique(np.concatenate([qs, np.nextafter(qs, 2.0)]))  # just above each value too
    g_sorted, c_sorted, s_sorted = np.sort(p[~y & ~sub]), np.sort(p[y]), np.sort(p[sub])

    def above(a: np.ndarray) -> np.ndarray:
        return len(a) - np.searchsorted(a, cuts, side="right")

    def below(a: np.ndarray) -> np.ndarray:
        return np.searchsorted(a, cuts, side="left")

    # per cut t: genuine with p > t (false rejects), counterfeits with p < t (misses), and the rest
    gen_above, gen_below = above(g_sorted), below(g_sorted)
    cf_above, cf_below = above(c_sorted), below(c_sorted)
    sub_above, sub_below = above(s_sorted), below(s_sorted)
    feasible: list[tuple[int, np.ndarray, np.ndarray]] = []  # (i, ks, reviews) for genuine_below = cuts[i]
    for i in range(len(cuts)):
        j = np.arange(i, len(cuts))  # counterfeit_above = cuts[j] >= cuts[i]
        gen_auto = gen_below[i] + gen_above[j]
        cf_auto = cf_below[i] + cf_above[j]
        sub_auto = sub_below[i] + sub_above[j]
        frr = np.where(gen_auto > 0, gen_above[j] / np.maximum(gen_auto, 1), 0.0)
        miss = np.where(cf_auto > 0, cf_below[i] / np.maximum(cf_auto, 1), 0.0)
        sub_miss = np.where(sub_auto > 0, sub_below[i] / np.maximum(sub_auto, 1), 0.0)
        ok = (frr <= safety * max_false_reject) & (miss <= safety * max_miss) & (sub_miss <= safety * max_subtle_miss)
        if ok.any():
            feasible.append((i, j[ok], len(p) - (gen_auto[ok] + cf_auto[ok] + sub_auto[ok])))
    if not feasible:  # nothing meets the limits: review everything between the extremes
        return Thresholds(genuine_below=0.0, counterfeit_above=1.0, signs=dict(sign_thresholds or {}),
                          max_false_reject=max_false_reject, max_miss=max_miss)
    least = min(int(r.min()) for _, _, r in feasible)
    pairs = np.array([(i, k) for i, ks, r in feasible for k in ks[r == least]])
    # every pair left reviews the fewest scans; take the one in the middle of them (in logit space), not
    # one at the edge, where a score distribution that shifts a little on unseen scans would cross it
    z = np.log(np.clip(cuts, 1e-9, 1 - 1e-9) / (1 - np.clip(cuts, 1e-9, 1 - 1e-9)))
    zg, zc = z[pairs[:, 0]], z[pairs[:, 1]]
    best = int(np.argmin(np.abs(zg - (zg.min() + zg.max()) / 2) + np.abs(zc - (zc.min() + zc.max()) / 2)))
    return Thresholds(genuine_below=float(cuts[pairs[best, 0]]), counterfeit_above=float(cuts[pairs[best, 1]]),
                      signs=dict(sign_thresholds or {}), max_false_reject=max_false_reject, max_miss=max_miss)


def choose_sign_thresholds(sign_p: np.ndarray, sign_true: np.ndarray, sign_names: list[str],
                           max_false_alarm: float = 0.005, floor: float = 0.05) -> dict[str, float]:
    """Per sign, a threshold in [floor, 0.5] whose false-alarm rate among validation notes without that
    sign is <= max_false_alarm: the lowest such threshold when the sign's scores overlap, and the middle
    (in logit space) of the gap between notes without and with the sign when they do not.
    sign_p [N, S] probabilities, sign_true [N, S] 0/1."""
    sign_p = np.asarray(sign_p, dtype=np.float64)
    sign_true = np.asarray(sign_true) > 0.5
    out = {}
    for i, name in enumerate(sign_names):
        negatives = np.sort(sign_p[~sign_true[:, i], i])
        positives = np.sort(sign_p[sign_true[:, i], i])
        if len(negatives) == 0:
            out[name] = 0.5
            continue
        # the k-th largest negative score: at most k = floor(max_false_alarm * n) negatives may sit above it
        k = int(np.floor(max_false_alarm * len(negatives)))
        edge = float(negatives[len(negatives) - 1 - k])  # threshold t = edge lets exactly <= k negatives be > t
        if len(positives) and positives[0] > edge:  # a clean gap: its middle
            lo, hi = np.clip([edge, positives[0]], 1e-9, 1 - 1e-9)
            zmid = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
            edge = float(1.0 / (1.0 + np.exp(-zmid)))
        out[name] = float(min(0.5, max(floor, edge)))
    return out
