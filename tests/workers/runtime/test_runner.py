"""workers/runtime/runner.py: the runner batches, maps outputs back to their scans, and loads real checkpoints."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import torch
from PIL import ImageStat

from models.decision import Thresholds
from tests.concurrency import call_concurrently
from workers.core.schemas import ModelRef
from workers.runtime.runner import (
    InferenceTimeout,
    LoadedModel,
    ModelRunner,
    build_runner,
    load_model,
    pick_device,
)

SIGNS = ["watermark", "microprint"]
DENOMS = ["10", "20", "50"]


@dataclass(frozen=True)
class TwinPredictions:
    p_counterfeit: torch.Tensor
    signs: torch.Tensor
    denomination: torch.Tensor


def twin_forward(x: torch.Tensor) -> TwinPredictions:
    """Test twin of models.inference.predict: p_counterfeit is the input's first value."""
    p = x.flatten(1)[:, 0].clamp(0, 1)
    signs = torch.stack([p, 1 - p], dim=1)
    denom = torch.softmax(torch.stack([p, 1 - p, torch.zeros_like(p)], dim=1) * 10, dim=1)
    return TwinPredictions(p, signs, denom)


def twin_preprocess(image) -> torch.Tensor:
    """Test twin of models.transforms.preprocess_image: [3, 4, 4] filled with the mean red level."""
    red = ImageStat.Stat(image.convert("RGB")).mean[0] / 255
    return torch.full((3, 4, 4), red)


def twin_model(forward=twin_forward) -> LoadedModel:
    """A stand-in for a loaded checkpoint: real torch, no weights."""
    return LoadedModel(ref=ModelRef("twin", "0", "0" * 64), sign_names=SIGNS, denominations=DENOMS,
                       thresholds=Thresholds(genuine_below=0.3, counterfeit_above=0.7, signs={"watermark": 0.5}),
                       input_shape=(3, 4, 4), preprocess=twin_preprocess, forward=forward,
                       device=torch.device("cpu"))


def infer_all(runner: ModelRunner, values: list[float]):
    return call_concurrently(lambda v: runner.infer(torch.full((3, 4, 4), v)), values)


def test_concurrent_scans_share_one_batch_and_get_their_own_outputs():
    runner = ModelRunner(twin_model(), max_batch_size=8, max_wait_s=0.5)
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    preds = infer_all(runner, values)
    runner.close()
    assert [round(p.p_counterfeit, 4) for p in preds] == values  # no output reached the wrong scan
    assert {p.batch_id for p in preds} == {preds[0].batch_id} and {p.batch_size for p in preds} == {8}
    assert preds[0].signs == pytest.approx({"watermark": 0.1, "microprint": 0.9})
    assert set(preds[0].denomination) == set(DENOMS) and sum(preds[0].denomination.values()) == pytest.approx(1)
    assert preds[0].inference_start <= preds[0].inference_end


def test_a_backlog_is_cut_into_batches_of_max_size():
    runner = ModelRunner(twin_model(), max_batch_size=4, max_wait_s=0.2)
    preds = infer_all(runner, [0.5] * 10)
    runner.close()
    sizes = sorted(p.batch_size for p in preds)
    assert max(sizes) <= 4 and len({p.batch_id for p in preds}) >= 3


def test_a_scan_whose_input_breaks_the_batch_fails_alone():
    def forward(x):
        if (x < 0).any():
            raise RuntimeError("negative input")
        return twin_forward(x)

    runner = ModelRunner(twin_model(forward), max_batch_size=4, max_wait_s=0.3)
    preds = infer_all(runner, [0.2, -1.0, 0.8, 0.4])
    runner.close()
    assert isinstance(preds[1], RuntimeError)
    assert [round(preds[i].p_counterfeit, 4) for i in (0, 2, 3)] == [0.2, 0.8, 0.4]


def test_a_stuck_forward_pass_is_a_transient_timeout():
    release = threading.Event()

    def forward(x):
        release.wait(5)
        return twin_forward(x)

    runner = ModelRunner(twin_model(forward), max_batch_size=1, max_wait_s=0, result_timeout_s=0.1)
    with pytest.raises(InferenceTimeout):
        runner.infer(torch.zeros(3, 4, 4))
    release.set()
    runner.close()


def test_warm_up_runs_a_full_batch_through_the_model():
    seen = []
    runner = ModelRunner(twin_model(lambda x: seen.append(tuple(x.shape)) or twin_forward(x)), 6, 0.01)
    runner.warm_up()
    runner.close()
    assert seen == [(6, 3, 4, 4)]


@pytest.fixture()
def checkpoint_path(tmp_path):
    """A real checkpoint file (random weights, tiny net) written by the models package's own saver."""
    from models.checkpoint import save_checkpoint
    from models.net import BillNet, NetConfig
    from models.transforms import PreprocessParams

    config = NetConfig(num_signs=2, num_denominations=3, stem=4, stages=(8, 8))
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, BillNet(config).eval(), name="tiny", version="t1", sign_names=SIGNS,
                    denominations=DENOMS, preprocess=PreprocessParams(height=32, width=64),
                    thresholds=Thresholds(genuine_below=0.4, counterfeit_above=0.6))
    return path


def test_load_model_reads_a_real_checkpoint_and_runs_through_the_runner(checkpoint_path):
    from PIL import Image

    from workers.core.settings import Settings

    model = load_model(Settings().with_(model=str(checkpoint_path), device="cpu"))
    assert model.ref.name == "tiny" and model.ref.version == "t1" and len(model.ref.sha256) == 64
    assert model.input_shape == (3, 32, 64)
    x = model.preprocess(Image.new("RGB", (300, 140), (200, 180, 90)))
    assert tuple(x.x.shape) == (3, 32, 64) and x.x.dtype == torch.uint8  # normalised later, once per batch
    assert x.seen is not None and x.seen.notes <= 1  # what the locator saw travels with the scan
    runner = ModelRunner(model, max_batch_size=4, max_wait_s=0.01)
    runner.warm_up()
    pred = runner.infer(x)
    runner.close()
    assert 0.0 <= pred.p_counterfeit <= 1.0 and set(pred.signs) == set(SIGNS)
    assert pred.batch_size == 1


def test_build_runner_loads_warms_up_and_says_so(checkpoint_path):
    from structlog.testing import capture_logs

    from workers.core.settings import Settings

    settings = Settings().with_(model=str(checkpoint_path), device="cpu", max_batch_size=2)
    with capture_logs() as events:
        runner = build_runner(settings)
    try:
        assert runner.model_ref.name == "tiny" and runner.batcher.max_size == 2 and runner.batcher.is_alive()
        loaded = [e for e in events if e["event"] == "model_loaded"]
        assert len(loaded) == 1 and loaded[0]["version"] == "t1" and loaded[0]["warm_up_s"] >= 0
    finally:
        runner.close()
    assert not runner.batcher.is_alive()


def test_auto_device_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu").type == "cpu"


def test_to_device_is_a_no_op_on_the_cpu_and_the_cuda_path_is_guarded():
    from workers.runtime.runner import to_device

    x = torch.zeros(2, 3, 8, 8)
    assert to_device(x, torch.device("cpu")) is x  # no pinning, no copy, no layout change on the CPU
    if not torch.cuda.is_available():  # the CUDA branch (pinned, non_blocking, channels_last) is unrun here
        return
    y = to_device(x, torch.device("cuda"))
    assert y.is_cuda and y.is_contiguous(memory_format=torch.channels_last)


def test_split_preprocessing_is_bit_identical_to_the_models_one(checkpoint_path):
    """The worker runs models.transforms in two stages (uint8 per scan, normalize per batch): the
    batch it feeds the model must equal what training and evaluation compute, bit for bit."""
    from PIL import Image

    from models.checkpoint import load_checkpoint
    from models.transforms import preprocess_image
    from workers.core.settings import Settings

    model = load_model(Settings().with_(model=str(checkpoint_path), device="cpu"))
    params = load_checkpoint(checkpoint_path).preprocess
    images = [Image.new("RGB", (32, 32), (40, 90, 140)),  # the ceiling's stand-in: no note found, resized
              Image.radial_gradient("L").convert("RGB").resize((300, 140))]
    batch = model.input_batch([model.preprocess(im) for im in images])
    expected = torch.stack([preprocess_image(im, params) for im in images])
    assert batch.dtype == torch.float32 and torch.equal(batch, expected)


def test_warm_up_covers_every_batch_size_on_cuda_and_the_full_size_on_the_cpu():
    from workers.runtime.runner import warm_up_sizes

    assert warm_up_sizes(torch.device("cuda"), 4) == [1, 2, 3, 4]
    assert warm_up_sizes(torch.device("cpu"), 32) == [32]


def test_the_geometry_alone_rejects_two_notes_before_any_forward_pass(checkpoint_path):
    import numpy as np

    from models.synth.conditions import negative_scan
    from models.synth.render import render_note, sample_note
    from workers.core.errors import RejectedScan
    from workers.core.settings import Settings

    model = load_model(Settings().with_(model=str(checkpoint_path), device="cpu"))
    image, _ = negative_scan(np.random.default_rng([5, 0]), "two_apart",
                             lambda r: render_note(sample_note(r, counterfeit=False)))
    with pytest.raises(RejectedScan) as exc:
        model.preprocess(image)
    assert exc.value.reason == "multiple_notes" and "2 note-shaped regions" in exc.value.detail
