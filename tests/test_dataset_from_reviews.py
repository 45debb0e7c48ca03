"""Reviewed labels back into training: `tenderscan dataset from-reviews` writes the layout `dataset
generate` writes (models/data.py loads it), and `tenderscan train --init-from --extra-data` fine-tunes
a checkpoint on fresh synthetic data with the reviewed scans mixed in (a tiny run)."""

from __future__ import annotations

import json

from models.checkpoint import load_checkpoint
from models.data import load_folder, synthesize
from models.net import NetConfig
from models.synth.dataset import folder_sink, generate
from models.train import TrainConfig, save, train
from models.transforms import PreprocessParams
from producer.cli import main
from producer.cli.commands.dataset import from_reviews
from tests.workers.audit.records import SIGNER
from workers.audit.reviews import write_review
from workers.core.schemas import Review, new_scan_id
from workers.core.storage import MemoryObjectStore

PARAMS = PreprocessParams(height=56, width=128)
DAY = "2026-03-02"


def reviewed_bucket(tmp_path) -> MemoryObjectStore:
    """Four reviewed scans (synthetic notes as the 'uploads'): genuine, counterfeit, not a banknote, and a
    note the model read no denomination of."""
    anns = generate(folder_sink(tmp_path / "gen"), 4, seed=5, workers=1, progress=False)
    objects = MemoryObjectStore()
    labels = [("genuine", "10"), ("counterfeit", "20"), ("not_a_banknote", None), ("genuine", None)]
    for ann, (label, denom) in zip(anns, labels, strict=True):
        sid = new_scan_id()
        key = f"scans/dt=2026-03-01/tenant=acme/{sid}.jpg"
        objects.put(key, (tmp_path / "gen" / ann["file"]).read_bytes())
        write_review(Review(scan_id=sid, tenant="acme", label=label, reviewer="ann@acme",
                            reviewed_at=f"{DAY}T09:00:00.000000Z", submitted_at="2026-03-01T10:00:00.000000Z",
                            image_key=key, source="review", model_decision="review", model_confidence=0.55,
                            model_p_counterfeit=0.45, model_version="v7", model_denomination=denom,
                            signs_seen=["watermark"] if label == "counterfeit" else []), objects, SIGNER)
    return objects


def test_from_reviews_writes_a_folder_models_data_loads(tmp_path):
    lines, skipped = from_reviews(reviewed_bucket(tmp_path), DAY, DAY, tmp_path / "reviewed")
    assert len(lines) == 3 and skipped == 1  # a note needs a denomination to train on
    manifest = [json.loads(x) for x in (tmp_path / "reviewed" / "manifest.jsonl").read_text().splitlines()]
    assert manifest == sorted(manifest, key=lambda a: a["scan_id"]) and len(manifest) == 3
    by_label = {a["label"]: a for a in manifest}
    assert by_label["counterfeit"]["signs"] == ["watermark"] and by_label["counterfeit"]["counterfeit"]
    assert by_label["not_a_banknote"]["kind"] == "not_a_banknote"
    assert by_label["genuine"]["reviewer"] == "ann@acme" and by_label["genuine"]["model"]["decision"] == "review"
    data = load_folder(tmp_path / "reviewed", PARAMS, workers=1, progress=False)
    assert len(data) == 3 and data.images.shape[2:] == (56, 128)
    assert sorted(data.kind.tolist()) == [0, 0, 1] and sorted(data.counterfeit.tolist()) == [0.0, 0.0, 1.0]


def test_train_fine_tunes_a_checkpoint_with_the_reviewed_scans_mixed_in(tmp_path):
    tr = synthesize(16, 1, PARAMS, capture="mix", workers=1, progress=False)
    cfg = TrainConfig(epochs=1, batch_size=8, threads=1, net=NetConfig(stem=8, stages=(8, 16), num_kinds=4,
                                                                      symmetric=True))
    save(train(tr, tr, cfg, PARAMS, progress=False), tmp_path / "base.pt", version="base")
    from_reviews(reviewed_bucket(tmp_path), DAY, DAY, tmp_path / "reviewed")
    assert main(["train", "--synth", "16", "--val-count", "12", "--init-from", str(tmp_path / "base.pt"),
                 "--extra-data", str(tmp_path / "reviewed"), "--epochs", "1", "--batch-size", "8", "--workers", "1",
                 "--threads", "1", "--out", str(tmp_path / "tuned.pt"), "--no-progress"]) == 0
    base, tuned = load_checkpoint(tmp_path / "base.pt"), load_checkpoint(tmp_path / "tuned.pt")
    assert tuned.config == base.config and tuned.preprocess == PARAMS  # the checkpoint's net and preprocessing
    assert tuned.data["init_from"]["weights_sha256"] == base.weights_sha256 != tuned.weights_sha256
    assert tuned.data["train_count"] == 16 + 3
    assert tuned.data["extra_data"][0]["count"] == 3
