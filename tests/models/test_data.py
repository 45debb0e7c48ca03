import torch

from models.data import load_folder, synthesize, targets
from models.synth import SIGN_NAMES
from models.synth.dataset import folder_sink, generate
from models.transforms import PreprocessParams


def test_folder_and_memory_give_the_same_tensors(tmp_path):
    params = PreprocessParams()
    generate(folder_sink(tmp_path), 6, seed=8, workers=1, progress=False)
    a = load_folder(tmp_path, params, workers=1, progress=False)
    b = synthesize(6, 8, params, workers=1, progress=False)
    assert a.images.shape == (6, 3, params.height, params.width) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    assert a.manifest_sha256 == b.manifest_sha256
    assert torch.equal(a.signs, b.signs) and torch.equal(a.counterfeit, b.counterfeit)


def test_targets_follow_the_annotation():
    ann = {"counterfeit": True, "signs": {"watermark": {}, "serial_format": {}}, "denomination": "20"}
    cf, signs, denom = targets(ann)
    assert cf == 1.0 and denom == 2
    assert signs == [1.0 if s in ("watermark", "serial_format") else 0.0 for s in SIGN_NAMES]
