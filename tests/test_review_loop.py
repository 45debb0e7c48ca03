"""The loop of docs/REVIEW.md ("The loop"): reviewed scans -> `train --init-from --extra-data --holdout`
-> `evaluate --model NEW --baseline OLD --data DIR --holdout` on the share training never saw.

The first tests run the commands on a tiny network; `test_the_loop_lowers_review_on_a_family_and_keeps_default`
fine-tunes the shipped model on reviewed scans of one capture family it sends to review often (a few
minutes on 2 cores: marked slow) and asserts the review rate falls there and the default capture holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from models.holdout import in_holdout
from models.net import NetConfig
from models.synth.dataset import MANIFEST, folder_sink, generate, manifest_line
from models.train import TrainConfig, save, train
from models.transforms import PreprocessParams
from producer.cli import main

PARAMS = PreprocessParams(height=56, width=128)
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "default" / "tenderscan-default.pt"


def reviewed_folder(out: Path, count: int, seed: int, capture: str, workers: int = 1) -> list[dict]:
    """Synthetic scans written as `tenderscan dataset from-reviews` writes reviewed ones: a scan id per scan,
    the reviewer's label (here the truth), the signs ticked, the denomination. Scenes the generator labels
    as not one whole note are left out: a reviewer labels notes genuine or counterfeit."""
    anns = generate(folder_sink(out), count, seed, capture=capture, workers=workers, progress=False)
    lines = [{"file": a["file"], "kind": "note", "label": "counterfeit" if a["counterfeit"] else "genuine",
              "counterfeit": a["counterfeit"], "signs": sorted(a["signs"]), "denomination": a["denomination"],
              "source": "review", "scan_id": hashlib.sha256(f"{seed}:{a['index']}".encode()).hexdigest()[:32],
              "tenant": "acme", "reviewer": "ann@acme", "review_source": "review"}
             for a in anns if a.get("kind", "note") == "note"]
    (out / MANIFEST).write_text("".join(manifest_line(x) + "\n" for x in lines), encoding="utf-8")
    return lines


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from models.data import synthesize

    path = tmp_path_factory.mktemp("base") / "base.pt"
    tr = synthesize(16, 1, PARAMS, capture="mix", workers=1, progress=False)
    cfg = TrainConfig(epochs=1, batch_size=8, threads=1, net=NetConfig(stem=8, stages=(8, 16), num_kinds=4,
                                                                      symmetric=True))
    save(train(tr, tr, cfg, PARAMS, progress=False), path, version="base")
    return path


def test_train_holdout_leaves_out_exactly_the_share_evaluate_holdout_measures(tmp_path, tiny_base):
    from models.checkpoint import load_checkpoint

    lines = reviewed_folder(tmp_path / "reviewed", 12, 7, "default")
    held = [a for a in lines if in_holdout(a, 0.5)]
    assert 0 < len(held) < len(lines)
    assert main(["train", "--synth", "12", "--val-count", "8", "--init-from", str(tiny_base), "--extra-data",
                 str(tmp_path / "reviewed"), "--holdout", "0.5", "--keep-thresholds", "--epochs", "1", "--batch-size", "8", "--workers",
                 "1", "--threads", "1", "--out", str(tmp_path / "tuned.pt"), "--no-progress"]) == 0
    tuned = load_checkpoint(tmp_path / "tuned.pt")
    assert tuned.data["extra_data"][0]["count"] == len(lines) - len(held)
    assert tuned.data["extra_data"][0]["holdout"]["share"] == 0.5
    assert tuned.data["train_count"] == 12 + len(lines) - len(held)
    base = load_checkpoint(tiny_base)
    assert tuned.thresholds == base.thresholds and tuned.data["kept_thresholds_from_init"]

    out = tmp_path / "compare.json"
    assert main(["evaluate", "--model", str(tmp_path / "tuned.pt"), "--baseline", str(tiny_base),
                 "--data", str(tmp_path / "reviewed"), "--holdout", "0.5", "--data", "synth:8:3:default",
                 "--json", str(out), "--workers", "1", "--no-progress"]) == 0
    rep = json.loads(out.read_text())
    assert rep["new"]["weights_sha256"] == tuned.weights_sha256 and rep["baseline"]["version"] == "base"
    reviewed = rep["sets"][f"{tmp_path / 'reviewed'} (held out 0.5)"]
    assert reviewed["count"] == len(held)
    assert rep["sets"]["synth:8:3:default"]["count"] == 8
    for row in rep["sets"].values():
        assert set(row["delta"]) == {"auto_accuracy", "review_rate", "genuine_called_counterfeit",
                                     "counterfeit_called_genuine", "rejected_rate"}
        for k, d in row["delta"].items():
            if d is not None:
                assert d == pytest.approx(row["new"][k] - row["baseline"][k])


def test_fail_on_worse_exits_1_and_a_single_model_takes_one_data(tmp_path, tiny_base, capsys):
    out = str(tmp_path / "c.json")
    args = ["evaluate", "--model", str(tiny_base), "--baseline", str(tiny_base), "--data", "synth:6:4:default",
            "--json", out, "--workers", "1", "--no-progress"]
    assert main(args + ["--fail-on-worse"]) == 0  # a model against itself: nothing moved
    assert "nothing worse" in capsys.readouterr().out
    # a negative tolerance calls even no change worse: the gate's exit status
    assert main(args + ["--fail-on-worse", "--tolerance", "-0.001"]) == 1
    assert "WORSE" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(tiny_base), "--data", "synth:6:4", "--data", "synth:6:5", "--json", out])


def test_compare_on_robustness_suite_cells(tmp_path, tiny_base):
    out = tmp_path / "s.json"
    assert main(["evaluate", "--model", str(tiny_base), "--baseline", str(tiny_base), "--suite", "robustness",
                 "--only", "glare", "--per-cell", "4", "--json", str(out), "--workers", "1", "--no-progress"]) == 0
    rep = json.loads(out.read_text())
    assert sorted(rep["suite"]) == ["glare/mild", "glare/realistic", "glare/strong"] and rep["sets"] == {}
    assert all(row["n"] == 4 and row["worse"] == [] for row in rep["suite"].values())


# The loop at small scale on the shipped model (docs/REVIEW.md, "The loop", has the numbers per seed):
# reviewed scans of one capture family the shipped model sends to review often, a third held out by scan
# id; the fine-tune sees the rest three times over beside fresh synthetic scans of the training mixture and
# keeps the shipped thresholds. At this scale the family's held-out review rate fell by 11.9 points with
# seed 43 and rose by 2.3 with seed 44, and the default capture lost 0.5-1.6 points of auto-decided
# accuracy: the effect is not a property to assert, so the test asserts what the loop must always do (the
# held-out share never trained on and measured, both models on the same scans, the gate's exit status
# agreeing with the table) and prints the numbers.
LOOP_FAMILY = "family:compression:strong"
LOOP_REVIEWED, LOOP_HOLDOUT, LOOP_DEFAULT = 150, "0.33", 200


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_loop_on_the_shipped_model_end_to_end(tmp_path, capsys):
    from models.checkpoint import load_checkpoint

    seed = 43
    reviewed = tmp_path / "reviewed"
    lines = reviewed_folder(reviewed, LOOP_REVIEWED, seed, LOOP_FAMILY, workers=2)
    held = [a for a in lines if in_holdout(a, float(LOOP_HOLDOUT))]
    tuned = tmp_path / "tuned.pt"
    assert main(["train", "--init-from", str(SHIPPED), "--synth", "200", "--capture", "mix", "--val-count", "100",
                 "--data-seed", str(seed + 10), *["--extra-data", str(reviewed)] * 3, "--holdout", LOOP_HOLDOUT,
                 "--keep-thresholds", "--epochs", "4", "--lr", "1e-3", "--batch-size", "32", "--workers", "2",
                 "--threads", "2", "--out", str(tuned), "--version", "loop", "--no-progress"]) == 0
    ckpt, shipped = load_checkpoint(tuned), load_checkpoint(SHIPPED)
    assert [e["count"] for e in ckpt.data["extra_data"]] == [len(lines) - len(held)] * 3
    assert ckpt.thresholds == shipped.thresholds and ckpt.weights_sha256 != shipped.weights_sha256
    out = tmp_path / "compare.json"
    status = main(["evaluate", "--model", str(tuned), "--baseline", str(SHIPPED), "--data", str(reviewed),
                   "--holdout", LOOP_HOLDOUT, "--data", f"synth:{LOOP_DEFAULT}:{seed + 20}:default", "--json",
                   str(out), "--no-progress", "--fail-on-worse"])
    rep = json.loads(out.read_text())
    family = rep["sets"][f"{reviewed} (held out {float(LOOP_HOLDOUT):g})"]
    default = rep["sets"][f"synth:{LOOP_DEFAULT}:{seed + 20}:default"]
    with capsys.disabled():  # the numbers docs/REVIEW.md reports
        print(json.dumps({k: {"n": v["n"], "baseline": v["baseline"], "new": v["new"]}
                          for k, v in (("family", family), ("default", default))}, indent=1))
    assert family["count"] == len(held) >= 30 and default["count"] == LOOP_DEFAULT
    assert family["baseline"]["review_rate"] >= 0.10  # the family the shipped model is unsure about
    assert status == (1 if rep["worse"] else 0)
