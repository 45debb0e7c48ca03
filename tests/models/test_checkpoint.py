import io

import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, weights_sha256
from models.decision import Thresholds
from models.synth import SIGN_NAMES


def test_round_trip_rebuilds_the_same_model(tiny_ckpt_path):
    a = load_checkpoint(tiny_ckpt_path)
    b = load_checkpoint(tiny_ckpt_path.read_bytes())
    x = torch.randn(2, 3, 112, 256)
    assert not a.model.training
    with torch.no_grad():
        for ya, yb in zip(a.model(x), b.model(x), strict=True):
            assert (ya is None and yb is None) or torch.equal(ya, yb)
    assert a.name == "tiny" and a.version == "t1"
    assert a.sign_names == SIGN_NAMES and len(a.denominations) == 4
    assert a.thresholds == Thresholds(0.2, 0.8)
    assert a.weights_sha256 == weights_sha256(a.model.state_dict())
    assert a.data["train_manifest_sha256"] == "abc"


def test_truncated_file_fails_clearly(tiny_ckpt_path):
    data = tiny_ckpt_path.read_bytes()
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(data[: len(data) // 2])


def test_tampered_weights_fail_the_sha256(tiny_ckpt_path):
    payload = torch.load(tiny_ckpt_path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1.0
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        load_checkpoint(buf.getvalue())


def test_expected_sha256_is_enforced(tiny_ckpt_path):
    good = load_checkpoint(tiny_ckpt_path).weights_sha256
    assert load_checkpoint(tiny_ckpt_path, expected_sha256=good).weights_sha256 == good
    with pytest.raises(CheckpointError, match="not the expected"):
        load_checkpoint(tiny_ckpt_path, expected_sha256="0" * 64)


def test_foreign_files_fail_clearly(tmp_path):
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buf)
    with pytest.raises(CheckpointError, match="not a tenderscan checkpoint"):
        load_checkpoint(buf.getvalue())
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(b"\x89PNG not a checkpoint")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_shape_mismatch_fails_clearly(tiny_ckpt_path):
    payload = torch.load(tiny_ckpt_path, weights_only=True)
    payload["model_config"]["stem"] = 16  # weights no longer fit
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(buf.getvalue())
