"""Which model decides a scan, and when a canary is rolled back. No torch here: the models are opaque.

    ServedModel        one loaded version under one alias (production or canary): the runner's
                       LoadedModel, its registry version, and where its verdicts are counted
    Serving            a frozen snapshot: production, the canary (or None) and its share. It is
                       replaced whole, never changed, so a scan picks its model once, from one snapshot
    LiveModels         holds the current snapshot; pick(scan_id) -> ServedModel; swap(new)
    routes_to_canary   a hash of the scan id against the share: a retry lands on the same model
    shadow             a third model on a sample of scans (its own hash of the id): scored in the same
                       batches, its answer recorded beside production's, never returned (runtime/shadow.py)
    Tally              this process's verdict counts per arm, drained into Redis by the watcher
    breaches           (counts, band) -> why the canary left its band, or nothing (pure)
    CanaryJudge        per watcher tick: add the tally to the fleet's window in Redis, judge the window
                       and the one before it, and past the band roll back: the canary alias moved to
                       production's version, a signed `canary_rolled_back` record (one worker, by lock)

The arms are counted in the same window, so the band is relative: the canary's review rate may exceed
production's by CANARY_REVIEW_MARGIN, and at most CANARY_MAX_ERROR_RATE of its scans may fail in the
forward pass; and once CANARY_MIN_REVIEWS of its counterfeit verdicts were reviewed in the review
console, at most CANARY_MAX_FALSE_REJECT of them may have been genuine notes (each worker watches the
review keys of the canary's counterfeit verdicts it decided).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from workers.core import registry, telemetry
from workers.core.enums import ReviewLabel
from workers.core.schemas import ModelRef

log = structlog.get_logger("workers.runtime.rollout")

PRODUCTION, CANARY, SHADOW = "production", "canary", "shadow"  # the arms (a tally's field prefixes)
REVIEW, ERROR, COUNTERFEIT = "review", "error", "counterfeit"


def _place(scan_id: str, salt: str = "") -> float:
    """The scan's fixed place in [0, 1): sha256 of (salt +) its id. The same answer every delivery."""
    return int(hashlib.sha256((salt + scan_id).encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def routes_to_canary(scan_id: str, share: float) -> bool:
    return share > 0 and _place(scan_id) < share


def routes_to_shadow(scan_id: str, share: float) -> bool:
    """Its own salt, so the shadow's sample is not the canary's."""
    return share > 0 and _place(scan_id, "shadow:") < share


REVIEWED, FALSE_REJECT = "canary-review:counterfeit", "canary-review:false_reject"  # tally fields
WATCHED_MAX = 5000  # canary counterfeit verdicts per process whose review is awaited (oldest dropped)


class Tally:
    """Thread-safe counts of "{arm}:{decision}" and "{arm}:error" since the last drain, and the canary's
    counterfeit verdicts whose review (a person's label) is awaited."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._awaiting: deque[str] = deque(maxlen=WATCHED_MAX)

    def await_review(self, scan_ids) -> None:
        with self._lock:
            self._awaiting.extend(scan_ids)

    def take_awaiting(self) -> list[str]:
        with self._lock:
            out = list(self._awaiting)
            self._awaiting.clear()
        return out

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def drain(self) -> dict[str, int]:
        with self._lock:
            out, self._counts = dict(self._counts), Counter()
        return out


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One version serving under one alias. Identity matters: the batcher groups a batch by it."""

    alias: str  # production or the canary alias (its arm in the tally)
    version: str  # the registry version, or the checkpoint's own for a model loaded from a path
    model: Any  # runner.LoadedModel
    arm: str = PRODUCTION
    tally: Tally | None = None

    @property
    def ref(self) -> ModelRef:
        """The verdict's `model`: the checkpoint's name, the version served, the verified weights' sha256."""
        return ModelRef(self.model.ref.name, self.version, self.model.ref.sha256)

    @property
    def thresholds(self) -> Any:
        return self.model.thresholds

    def record(self, decision: str, scan_id: str | None = None) -> None:
        telemetry.MODEL_SCANS.labels(alias=self.alias, version=self.version, decision=decision).inc()
        if self.tally is not None:
            self.tally.add(f"{self.arm}:{decision}")
            if self.arm == CANARY and decision == COUNTERFEIT and scan_id is not None:
                self.tally.await_review([scan_id])  # a person may find it genuine: a false reject

    def record_error(self, n: int = 1) -> None:
        telemetry.MODEL_ERRORS.labels(alias=self.alias, version=self.version).inc(n)
        if self.tally is not None:
            self.tally.add(f"{self.arm}:{ERROR}", n)


@dataclass(frozen=True)
class Serving:
    production: ServedModel
    canary: ServedModel | None = None
    canary_share: float = 0.0
    shadow: ServedModel | None = None
    shadow_share: float = 0.0

    def pick(self, scan_id: str | None) -> ServedModel:
        if self.canary is not None and scan_id is not None and routes_to_canary(scan_id, self.canary_share):
            return self.canary
        return self.production

    def shadows(self, scan_id: str | None) -> ServedModel | None:
        """The shadow, when this scan is in its sample."""
        if self.shadow is not None and scan_id is not None and routes_to_shadow(scan_id, self.shadow_share):
            return self.shadow
        return None

    def models(self) -> tuple[ServedModel | None, ...]:
        return self.production, self.canary, self.shadow


class LiveModels:
    """The current Serving of a worker process. Reading `serving` is one attribute load (atomic)."""

    def __init__(self, serving: Serving, tally: Tally | None = None) -> None:
        self.serving = serving
        self.tally = tally or Tally()

    def pick(self, scan_id: str | None) -> ServedModel:
        return self.serving.pick(scan_id)

    def swap(self, serving: Serving) -> Serving:
        old, self.serving = self.serving, serving
        return old


# --- judging a canary ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    min_scans: int = 30
    review_margin: float = 0.05
    max_error_rate: float = 0.02
    min_reviews: int = 10
    max_false_reject: float = 0.05

    @classmethod
    def from_settings(cls, settings) -> Band:
        return cls(settings.canary_min_scans, settings.canary_review_margin, settings.canary_max_error_rate,
                   settings.canary_min_reviews, settings.canary_max_false_reject)


def _rates(counts: dict[str, int], arm: str) -> tuple[int, float, float]:
    """(scans, review rate among verdicts, error rate among scans) of one arm."""
    verdicts = sum(n for k, n in counts.items() if k.startswith(arm + ":") and k != f"{arm}:{ERROR}")
    errors = counts.get(f"{arm}:{ERROR}", 0)
    scans = verdicts + errors
    return scans, counts.get(f"{arm}:{REVIEW}", 0) / verdicts if verdicts else 0.0, errors / scans if scans else 0.0


def breaches(counts: dict[str, int], band: Band) -> list[str]:
    """Why the canary left its band in these counts (empty: it did not, or too few scans to tell)."""
    out = []
    reviewed = counts.get(REVIEWED, 0)
    if reviewed >= band.min_reviews and counts.get(FALSE_REJECT, 0) / reviewed > band.max_false_reject:
        out.append(f"false-reject rate {counts.get(FALSE_REJECT, 0) / reviewed:.3f} on {reviewed} reviewed "
                   f"counterfeit verdicts > {band.max_false_reject}")
    scans, review, errors = _rates(counts, CANARY)
    if scans < band.min_scans:
        return out
    _, prod_review, _ = _rates(counts, PRODUCTION)
    if errors > band.max_error_rate:
        out.append(f"error rate {errors:.3f} > {band.max_error_rate}")
    if review > prod_review + band.review_margin:
        out.append(f"review rate {review:.3f} > production's {prod_review:.3f} + {band.review_margin}")
    return out


@dataclass
class CanaryJudge:
    """The watcher's canary duty, each tick (see the module docstring)."""

    verdicts: Any  # core.verdict_store.VerdictStore
    models: Any  # the models bucket (ObjectStore)
    signer: Any  # audit.signing.Signer or None
    canary_alias: str
    window_s: int
    band: Band = field(default_factory=Band)
    clock: Any = time.time

    def window(self) -> int:
        return int(self.clock() // self.window_s)

    def tick(self, serving: Serving, tally: Tally) -> str | None:
        """Flush the tally; judge the canary if one serves. Returns the reason when this call rolled it back."""
        counts = tally.drain()
        awaiting = tally.take_awaiting()
        canary = serving.canary
        if canary is None:
            return None
        labels = self.verdicts.review_labels(awaiting)  # the reviews that came in since the last tick
        tally.await_review(s for s in awaiting if s not in labels)
        if labels:
            counts[REVIEWED] = counts.get(REVIEWED, 0) + len(labels)
            counts[FALSE_REJECT] = counts.get(FALSE_REJECT, 0) + sum(label == ReviewLabel.GENUINE for label in labels.values())
        w = self.window()
        self.verdicts.add_rollout_counts(canary.version, w, counts, ttl_s=3 * self.window_s)
        fleet = self.verdicts.rollout_counts(canary.version, [w - 1, w])
        reasons = breaches(fleet, self.band)
        if not reasons:
            return None
        return self.roll_back(canary.version, serving.production.version, fleet, reasons)

    def roll_back(self, canary_version: str, production_version: str, counts: dict, reasons: list[str]) -> str | None:
        """Move the canary alias to production's version and write the signed record; one worker does it."""
        from workers.audit.model_events import record_event

        if registry.alias_version(self.models, self.canary_alias) != canary_version:
            return None  # already moved (by another worker or an operator)
        if not self.verdicts.claim_rollback(canary_version):
            return None
        reason = "; ".join(reasons)
        # the record first: no alias is ever moved without its signed record (a failed move is retried
        # once the lock expires, with a second record)
        key = record_event(self.models, self.signer, "canary_rolled_back", canary_version, alias=self.canary_alias,
                           production=production_version, reason=reason, counts=counts,
                           window_s=self.window_s, band=vars(self.band))
        registry.promote(self.models, production_version, self.canary_alias, by="auto-rollback", reason=reason)
        kind = "false_reject" if "false-reject" in reason else "error_rate" if "error" in reason else "review_rate"
        telemetry.CANARY_ROLLBACKS.labels(reason=kind).inc()
        log.warning("canary_rolled_back", version=canary_version, production=production_version, reason=reason,
                    counts=counts, record=key)
        return reason
