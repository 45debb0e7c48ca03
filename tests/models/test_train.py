import torch

from models.checkpoint import load_checkpoint
from models.data import synthesize
from models.net import NetConfig
from models.train import TrainConfig, resolve_device, save, train
from models.transforms import PreprocessParams


def test_a_tiny_run_trains_saves_and_loads(tmp_path):
    params = PreprocessParams(height=56, width=128)
    tr = synthesize(24, 1, params, capture="mix", workers=1, progress=False)
    va = synthesize(12, 2, params, capture="mix", workers=1, progress=False)
    cfg = TrainConfig(epochs=2, batch_size=8, threads=1, net=NetConfig(stem=8, stages=(8, 16), num_kinds=4,
                                                                      symmetric=True))
    result = train(tr, va, cfg, params, progress=False)
    assert len(result.history) == 2
    assert result.metrics["train_images_per_s"] > 0 and result.metrics["infer_images_per_s"] > 0
    assert 0.0 <= result.thresholds.genuine_below <= result.thresholds.counterfeit_above <= 1.0
    assert result.data["train_manifest_sha256"] == tr.manifest_sha256
    save(result, tmp_path / "m.pt", version="test")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.preprocess == params and ckpt.version == "test"
    assert ckpt.metrics["history"][0]["epoch"] == 1
    assert ckpt.ood is not None and ckpt.thresholds.temperature > 0  # calibrated on validation
    assert 0.0 <= ckpt.thresholds.note_reject <= ckpt.thresholds.note_accept <= 1.0


def test_same_seed_same_weights():
    params = PreprocessParams(height=32, width=64)
    tr = synthesize(8, 1, params, workers=1, progress=False)
    cfg = TrainConfig(epochs=1, batch_size=4, threads=1, net=NetConfig(stem=4, stages=(8,)))
    a = train(tr, tr, cfg, params, progress=False).model.state_dict()
    b = train(tr, tr, cfg, params, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_auto_is_cpu_without_cuda():
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"
