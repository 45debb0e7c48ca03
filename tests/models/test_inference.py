import torch

from models.checkpoint import load_checkpoint
from models.inference import predict


def test_predict_returns_probabilities(tiny_ckpt_path):
    ckpt = load_checkpoint(tiny_ckpt_path)
    out = predict(ckpt, torch.randn(3, 3, 112, 256))
    assert len(out) == 3
    assert out.signs.shape == (3, 5) and out.denomination.shape == (3, 4)
    for t in (out.p_counterfeit, out.signs, out.denomination):
        assert t.dtype == torch.float32 and (t >= 0).all() and (t <= 1).all()
    assert torch.allclose(out.denomination.sum(1), torch.ones(3))
    assert not out.p_counterfeit.requires_grad


def test_predict_rejects_unbatched_input(tiny_ckpt_path):
    ckpt = load_checkpoint(tiny_ckpt_path)
    try:
        predict(ckpt, torch.randn(3, 112, 256))
    except ValueError as exc:
        assert "expected a batch" in str(exc)
    else:
        raise AssertionError("unbatched input was accepted")
