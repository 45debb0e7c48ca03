"""The CUDA code paths (issue #5 item 4), run where a GPU is: pinned non-blocking copies, channels-last,
bf16 autocast, the warm-up, the batcher on the GPU and optional torch.compile, each checked against
the CPU float32 answer of the same checkpoint on the same scans.

Skipped on machines without CUDA (CI here has none); docs/PERFORMANCE.md records where and when they
ran on a GPU (the prepared device script infra/gpu/run.sh runs this file first).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from models.decision import decide_many
from workers.core import imaging
from workers.core.settings import Settings
from workers.runtime.runner import ModelRunner, load_model, to_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")

SCANS = 96  # synthetic scans, half counterfeit; enough to compare decisions, quick to render


@pytest.fixture(scope="module")
def scans():
    from models.synth import make_scans

    return [jpeg for jpeg, _ in make_scans(SCANS, seed=515)]


@pytest.fixture(scope="module")
def models():
    return load_model(Settings().with_(device="cpu")), load_model(Settings().with_(device="cuda"))


def _inputs(model, scans) -> list[torch.Tensor]:
    limits = imaging.Limits.from_settings(Settings())
    return [model.preprocess(imaging.decode(data, limits)[0]) for data in scans]


def test_to_device_pins_copies_and_goes_channels_last():
    x = torch.randint(0, 255, (8, 3, 64, 144), dtype=torch.uint8)
    y = to_device(x, torch.device("cuda"))
    assert y.is_cuda and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.cpu(), x)


def test_cuda_model_is_channels_last_and_matches_cpu_float32(models, scans):
    cpu, gpu = models
    assert gpu.device.type == "cuda"
    conv = next(m for m in gpu_module(gpu).modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    xs = _inputs(cpu, scans)
    p_cpu = cpu.forward(cpu.input_batch(xs))
    p_gpu = gpu.forward(gpu.input_batch(xs))  # bf16 autocast inside models.inference.predict
    a, b = p_cpu.p_counterfeit.numpy(), p_gpu.p_counterfeit.cpu().numpy()
    assert np.abs(a - b).max() < 0.05, f"bf16 moved p_counterfeit by {np.abs(a - b).max():.4f}"
    assert np.abs(p_cpu.signs.numpy() - p_gpu.signs.cpu().numpy()).max() < 0.05
    agree = (decide_many(a, cpu.thresholds) == decide_many(b, gpu.thresholds)).mean()
    assert agree >= 0.98, f"CPU float32 and CUDA bf16 decisions agree on only {agree:.1%} of scans"


def test_runner_on_cuda_warms_up_and_batches_concurrent_scans(models, scans):
    cpu, gpu = models
    runner = ModelRunner(gpu, max_batch_size=32, max_wait_s=0.01)
    try:
        assert runner.warm_up() > 0
        xs = _inputs(gpu, scans)
        out: dict[int, float] = {}

        def one(i: int) -> None:
            out[i] = runner.infer(xs[i]).p_counterfeit

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(out) == len(xs)
        direct = gpu.forward(gpu.input_batch(xs)).p_counterfeit.cpu().numpy()
        got = np.array([out[i] for i in range(len(xs))])
        assert np.abs(direct - got).max() < 0.02  # batch composition changes bf16 kernels, not answers
    finally:
        runner.close()


def test_compiled_model_matches_eager(models, scans):
    _, gpu = models
    compiled = load_model(Settings().with_(device="cuda", compile=True))
    xs = _inputs(gpu, scans[:32])
    a = gpu.forward(gpu.input_batch(xs)).p_counterfeit.cpu().numpy()
    b = compiled.forward(compiled.input_batch(xs)).p_counterfeit.cpu().numpy()
    assert np.abs(a - b).max() < 0.02


def gpu_module(model) -> torch.nn.Module:
    """The nn.Module behind a LoadedModel's forward closure (models.checkpoint.Checkpoint.model)."""
    return next(c.cell_contents.model for c in model.forward.__closure__ if hasattr(c.cell_contents, "model"))
