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


def test_a_mixed_set_carries_kinds_and_the_locators_geometry():
    from models.synth.conditions import KINDS

    params = PreprocessParams()
    data = synthesize(4, 5, params, capture="negative:two_apart", workers=1, progress=False)
    assert data.kind.tolist() == [KINDS.index("multiple_notes")] * 4
    assert data.denomination.tolist() == [-1] * 4  # no denomination to learn from several notes
    assert (data.geometry[:, 1] >= 1).all() and data.geometry.shape == (4, 3)
    notes = synthesize(4, 5, params, capture="family:perspective:realistic", workers=1, progress=False)
    assert notes.kind.tolist() == [0] * 4 and bool(notes.is_note.all())
    assert (notes.geometry[:, 0] == 1).all() and (notes.geometry[:, 2] > 0.9).all()


def test_the_cache_keeps_the_geometry(tmp_path):
    from models.data import cached_synthesize

    params = PreprocessParams()
    a = cached_synthesize(tmp_path, 3, 9, params, "family:framing:strong", workers=1, progress=False)
    b = cached_synthesize(tmp_path, 3, 9, params, "family:framing:strong", workers=1, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(a.images, b.images) and torch.equal(a.geometry, b.geometry)
    assert (a.geometry[:, 2] < 0.85).all()  # ~30 % of each note outside the frame
