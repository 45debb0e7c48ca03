import json

from models.checkpoint import load_checkpoint
from models.make_default import main


def test_one_command_writes_checkpoint_and_evaluation(tmp_path, monkeypatch):
    import models.train as train_mod

    # a tiny network keeps this test fast; the pipeline is the one `make model` runs
    from models.net import NetConfig

    orig = train_mod.TrainConfig
    monkeypatch.setattr(train_mod, "TrainConfig",
                        lambda **kw: orig(**kw, threads=1, batch_size=8,
                                         net=NetConfig(stem=8, stages=(8, 16), num_kinds=4, symmetric=True)))
    rc = main(["--out", str(tmp_path), "--train-count", "24", "--val-count", "12", "--test-count", "12",
               "--harsh-count", "6", "--suite-per-cell", "2", "--epochs", "1", "--workers", "1", "--no-plots",
               "--version", "t"])
    assert rc == 0
    ev = json.loads((tmp_path / "evaluation.json").read_text())
    ckpt = load_checkpoint(tmp_path / "tenderscan-default.pt")
    assert ev["weights_sha256"] == ckpt.weights_sha256
    assert ckpt.metrics["test"]["harsh_medium_obvious_accuracy"] == ev["summary"]["harsh_medium_obvious_accuracy"]
    assert set(ev["test"]) == {"default", "harsh"}
    assert ev["counts"]["train"] == 24 and any(r["target"].startswith("training wall") for r in ev["targets"])
    suite = json.loads((tmp_path / "robustness.json").read_text())
    assert "glare/realistic" in suite["cells"] and suite["negatives"]["all"]["n"] == 6
    assert any(r["target"].startswith("ECE pooled") for r in ev["targets"])
    assert "| glare | realistic |" in (tmp_path / "robustness.md").read_text()
