"""models/robustness.py and `tenderscan evaluate --suite robustness`: every family at every strength, the
held-out negatives, the per-family table, the reliability diagrams and the gallery."""

import json

from models.robustness import NEGATIVES, cells, check_suite, evaluate_suite, markdown_table, synthesize_suite


def test_the_suite_has_a_cell_per_family_and_strength_plus_control_and_negatives():
    from models.synth.conditions import FAMILIES, STRENGTHS

    c = cells()
    assert len(c) == len(FAMILIES) * len(STRENGTHS) + 2
    assert c[0] == "none/control" and c[-1] == NEGATIVES and "glare/realistic" in c


def test_a_small_suite_end_to_end(tiny_ckpt_path):
    from models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_ckpt_path)
    sets = synthesize_suite(ckpt.preprocess, per_cell=2, workers=1, progress=False,
                            only=["none", "glare", "orientation", "negatives"])
    assert set(sets) == {"none/control", "glare/mild", "glare/realistic", "glare/strong", "orientation/mild",
                         "orientation/realistic", "orientation/strong", NEGATIVES}
    assert len(sets[NEGATIVES]) == 6
    report = evaluate_suite(ckpt, sets)
    json.dumps(report)  # JSON-ready
    row = report["cells"]["glare/realistic"]
    assert row["n"] == 2 and 0.0 <= row["review_rate"] <= 1.0
    assert report["negatives"]["all"]["n"] == 6
    assert "| glare | realistic |" in markdown_table(report)
    targets = {r["target"]: r for r in check_suite(report)}
    assert "glare/realistic: genuine_called_counterfeit" in targets
    assert targets["negatives never trained on: decided genuine"]["measured"] == report["negatives"]["all"]["genuine"]
    assert report["orientation"]["upside_down"]["auto_accuracy"] == report["cells"]["orientation/mild"]["auto_accuracy"]


def test_the_cli_runs_the_suite_and_writes_plots(tiny_ckpt_path, tmp_path, capsys):
    from producer.cli import main

    rc = main(["evaluate", "--model", str(tiny_ckpt_path), "--suite", "robustness", "--per-cell", "1",
               "--only", "shadow", "negatives", "--workers", "1", "--no-progress", "--json", str(tmp_path / "s.json"),
               "--plots", str(tmp_path / "plots")])
    assert rc == 0
    report = json.loads((tmp_path / "s.json").read_text())
    assert set(report["cells"]) == {"shadow/mild", "shadow/realistic", "shadow/strong"}
    assert (tmp_path / "plots" / "robustness-reliability.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "robustness-gallery.jpg").stat().st_size > 10000
    assert "| shadow | strong |" in capsys.readouterr().out
