"""Two checkpoints on the same scans, side by side: does a fine-tune help where it was meant to, and does it
forget anything elsewhere?

    row = compare_blocks(new_block, baseline_block, SET_METRICS, tolerance=0.01)
    # {"new": {...}, "baseline": {...}, "delta": {metric: new - baseline}, "worse": [metrics]}
    report = compare_sets(new, baseline, {"reviewed (held out)": (data_new, data_baseline)}, tolerance)
    report["suite"] = compare_suite(new_suite_report, baseline_suite_report, tolerance)
    print(table(report))

A metric is "worse" when it moved the wrong way by more than `tolerance` (an absolute share: 0.01 is one
point): accuracy on auto-decided scans down, or review, false rejects, misses or rejections up.
`tenderscan evaluate --model NEW --baseline OLD` runs it (docs/REVIEW.md, "The loop").
"""

from __future__ import annotations

from models.checkpoint import Checkpoint
from models.data import ScanSet
from models.evaluate import evaluate, to_json

# (metric, +1 when higher is better / -1 when lower is, label): the blocks of models.evaluate
SET_METRICS = (
    ("auto_accuracy", +1, "accuracy (auto-decided)"),
    ("review_rate", -1, "review"),
    ("genuine_called_counterfeit", -1, "genuine → counterfeit"),
    ("counterfeit_called_genuine", -1, "counterfeit → genuine"),
    ("rejected_rate", -1, "rejected"),
)
# the robustness suite's cells (models.robustness._cell_metrics) split the misses by severity
SUITE_METRICS = (
    ("auto_accuracy", +1, "accuracy (auto-decided)"),
    ("review_rate", -1, "review"),
    ("genuine_called_counterfeit", -1, "genuine → counterfeit"),
    ("mo_counterfeit_called_genuine", -1, "medium+obvious cf → genuine"),
    ("subtle_counterfeit_called_genuine", -1, "subtle cf → genuine"),
)


def _model(ckpt: Checkpoint) -> dict:
    return {"name": ckpt.name, "version": ckpt.version, "weights_sha256": ckpt.weights_sha256}


def compare_blocks(new: dict, baseline: dict, metrics=SET_METRICS, tolerance: float = 0.01) -> dict:
    """The metrics of one subset for both models, their difference, and which got worse beyond tolerance."""
    row: dict = {"n": new.get("n"), "new": {}, "baseline": {}, "delta": {}, "worse": []}
    for key, better, _ in metrics:
        a, b = new.get(key), baseline.get(key)
        row["new"][key], row["baseline"][key] = a, b
        if a is None or b is None:
            row["delta"][key] = None
            continue
        row["delta"][key] = round(a - b, 6)
        if better * (a - b) < -tolerance:
            row["worse"].append(key)
    return row


def compare_sets(new: Checkpoint, baseline: Checkpoint, sets: dict[str, tuple[ScanSet, ScanSet]],
                 tolerance: float = 0.01, device: str = "cpu") -> dict:
    """`sets`: name -> (the scans preprocessed for `new`, the same scans preprocessed for `baseline`)."""
    rows = {}
    for name, (data_new, data_base) in sets.items():
        a, b = to_json(evaluate(new, data_new, device)), to_json(evaluate(baseline, data_base, device))
        rows[name] = {"manifest_sha256": data_new.manifest_sha256, "count": len(data_new),
                      **compare_blocks(a["overall"], b["overall"], SET_METRICS, tolerance)}
    return {"new": _model(new), "baseline": _model(baseline), "tolerance": tolerance, "sets": rows}


def compare_suite(new_report: dict, baseline_report: dict, tolerance: float = 0.01) -> dict:
    """Cell by cell, two reports of `models.robustness.evaluate_suite` on the same cells and seeds."""
    return {cell: compare_blocks(m, baseline_report["cells"][cell], SUITE_METRICS, tolerance)
            for cell, m in new_report["cells"].items() if cell in baseline_report["cells"]}


def worse(report: dict) -> list[str]:
    """Every 'set: metric' (and 'suite cell: metric') that got worse beyond the tolerance."""
    out = [f"{name}: {k}" for name, row in report["sets"].items() for k in row["worse"]]
    out += [f"suite {cell}: {k}" for cell, row in (report.get("suite") or {}).items() for k in row["worse"]]
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _pts(v) -> str:
    return "–" if v is None else f"{100 * v:+.1f}"


def table(report: dict) -> str:
    """One line per set (and suite cell) and metric: baseline, new, the difference in points, WORSE."""
    lines = [f"baseline {report['baseline']['version']} ({report['baseline']['weights_sha256'][:12]}) -> new "
             f"{report['new']['version']} ({report['new']['weights_sha256'][:12]}); worse = moved the wrong way "
             f"by more than {100 * report['tolerance']:.1f} points",
             "| set | n | metric | baseline | new | change (points) | |", "|---|---|---|---|---|---|---|"]
    groups = [(name, row, SET_METRICS) for name, row in report["sets"].items()]
    groups += [(f"suite {cell}", row, SUITE_METRICS) for cell, row in (report.get("suite") or {}).items()]
    for name, row, metrics in groups:
        for key, _, label in metrics:
            lines.append(f"| {name} | {row['n']} | {label} | {_pct(row['baseline'][key])} | {_pct(row['new'][key])} "
                         f"| {_pts(row['delta'][key])} | {'WORSE' if key in row['worse'] else ''} |")
    return "\n".join(lines) + "\n"
