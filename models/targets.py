"""The quality targets of the scanner presets (issues #2 and #12), checked against evaluation reports
(used by make_default and docs). The robustness suite's targets live in models.robustness."""

from __future__ import annotations

SIGN_RECALL_MIN = 0.97

# (name, report key path, comparison, target)
TARGETS: list[tuple[str, tuple[str, ...], str, float]] = [
    ("default capture, medium+obvious: accuracy", ("default", "medium_obvious", "accuracy"), ">=", 0.995),
    ("default capture, medium+obvious: genuine false-reject rate", ("default", "medium_obvious", "false_reject_rate"),
     "<=", 0.005),
    ("default capture, medium+obvious: counterfeit miss rate", ("default", "medium_obvious", "miss_rate"), "<=", 0.01),
    ("default capture, medium+obvious: review rate", ("default", "medium_obvious", "review_rate"), "<=", 0.02),
    ("default capture, medium+obvious: accuracy on auto-decided scans", ("default", "medium_obvious", "auto_accuracy"),
     ">=", 0.995),
    ("default capture, subtle: counterfeit recall (review counts as caught)",
     ("default", "by_severity", "subtle", "caught_rate"), ">=", 0.90),
    ("harsh capture, medium+obvious: accuracy", ("harsh", "medium_obvious", "accuracy"), ">=", 0.97),
]


def _get(reports: dict, path: tuple[str, ...]):
    cur = reports
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def check(reports: dict, train_wall_s: float | None = None, sign_names: list[str] | None = None) -> list[dict]:
    """reports: {"default": evaluate(...), "harsh": evaluate(...)} -> one row per target."""
    rows = []
    for name, path, op, target in TARGETS:
        rows.append(_row(name, _get(reports, path), op, target))
    for sign in sign_names or []:
        rows.append(_row(f"default capture, medium+obvious: recall of sign {sign}",
                         _get(reports, ("default", "medium_obvious", "sign_recall", sign)), ">=", SIGN_RECALL_MIN))
    if train_wall_s is not None:
        rows.append(_row("training wall time on this CPU (s)", train_wall_s, "<=", 1200.0))
    return rows


def _row(name: str, value, op: str, target: float) -> dict:
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"target": name, "measured": value, "op": op, "threshold": target, "met": met}
