import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)  # the CI box has 2 cores shared with other suites
    yield


@pytest.fixture(scope="session")
def tiny_ckpt_path(tmp_path_factory):
    """An untrained but valid checkpoint with a small network (fast)."""
    from models.checkpoint import save_checkpoint
    from models.decision import Thresholds
    from models.net import BillNet, NetConfig
    from models.synth import DENOMINATIONS, SIGN_NAMES
    from models.transforms import PreprocessParams

    torch.manual_seed(0)
    model = BillNet(NetConfig(stem=8, stages=(8, 16)))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model.eval(), name="tiny", version="t1", sign_names=SIGN_NAMES,
                    denominations=DENOMINATIONS, preprocess=PreprocessParams(), thresholds=Thresholds(0.2, 0.8),
                    metrics={"val_accuracy": 0.5}, data={"train_manifest_sha256": "abc"})
    return path
