"""A shadow's answers: recorded beside production's, never returned, compared later.

    record_shadow(verdicts, verdict, pred, seen)   the task thread, after the scan's own verdict: the
                                   shadow's prediction decided with the shadow's own thresholds, one entry
                                   in the Redis stream ts:shadow:{version} (scan, store, both decisions,
                                   both sign sets, both scores)
    compare(entries)               agreement overall, by production's decision, by sign, by store, and
                                   the scans decided differently: `tenderscan model compare`

Which scans a shadow scores (its own hash of the scan id) and how it runs beside production (its own
forward pass in the same batches) is rollout.py's and runner.py's.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger("workers.runtime.shadow")


def record_shadow(verdicts, verdict, pred, seen=None) -> None:
    """Decide the shadow's prediction with its own thresholds and add it, beside the verdict, to its stream.
    Best effort: a shadow never fails or delays a scan beyond this one write."""
    from workers.runtime import decide

    served = pred.served
    try:
        fields = decide.decide(pred.p_counterfeit, pred.signs, pred.denomination, served.thresholds,
                               kind=pred.kind, ood=pred.ood, seen=seen)
        served.record(fields.decision)
        verdicts.add_shadow(served.version, {
            "scan_id": verdict.scan_id, "tenant": verdict.tenant, "store": verdict.store_id,
            "decision": verdict.decision, "shadow_decision": fields.decision,
            "model": verdict.model.version if verdict.model else "",
            "signs": ",".join(verdict.signs_detected), "shadow_signs": ",".join(fields.signs_detected),
            "p": f"{verdict.p_counterfeit:.4f}" if verdict.p_counterfeit is not None else "",
            "shadow_p": f"{pred.p_counterfeit:.4f}"})
    except Exception as exc:  # noqa: BLE001 - the scan's verdict does not depend on its shadow
        log.warning("shadow_record_failed", scan_id=verdict.scan_id, error=type(exc).__name__)


def compare(entries, limit: int = 20) -> dict:
    """Agreement of a shadow with production over stream entries: overall, by production's decision, by
    sign (detected by both or by neither), by store, and the first `limit` scans decided differently."""
    def share(agree: int, n: int) -> dict:
        return {"scans": n, "agree": agree, "agreement": round(agree / n, 4) if n else None}

    n = agree = 0
    by_decision: dict[str, list[int]] = {}
    by_store: dict[str, list[int]] = {}
    by_sign: dict[str, list[int]] = {}
    differing = []
    for e in entries:
        same = e["decision"] == e["shadow_decision"]
        n, agree = n + 1, agree + same
        for table, key in ((by_decision, e["decision"]), (by_store, f"{e['tenant']}/{e['store']}")):
            cell = table.setdefault(key, [0, 0])
            cell[0], cell[1] = cell[0] + same, cell[1] + 1
        ours, theirs = set(filter(None, e["signs"].split(","))), set(filter(None, e["shadow_signs"].split(",")))
        for sign in ours | theirs:
            cell = by_sign.setdefault(sign, [0, 0])
            cell[0], cell[1] = cell[0] + (sign in ours and sign in theirs), cell[1] + 1
        if not same and len(differing) < limit:
            differing.append({k: e[k] for k in ("scan_id", "tenant", "store", "decision", "shadow_decision",
                                                 "p", "shadow_p")})
    return {**share(agree, n),
            "by_decision": {k: share(*v) for k, v in sorted(by_decision.items())},
            "by_sign": {k: share(*v) for k, v in sorted(by_sign.items())},
            "by_store": {k: share(*v) for k, v in sorted(by_store.items())},
            "differing": differing}
