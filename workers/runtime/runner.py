"""The model inside a worker process: loaded once, after fork, behind one batching thread.

    load_model(settings)    checkpoint path or `registry:REF` -> LoadedModel (on the chosen device)
    ModelRunner             owns the Batcher; `infer(x)` blocks the calling task thread until its
                            scan's batch has run, and returns that scan's ScanPrediction
    preprocessing           split in two (models.transforms): `preprocess` (per scan, task thread: the
                            canonical view, uint8) and `normalize` (once per stacked batch, batcher thread)
    build_runner(settings)  load + warm up: the runner of a worker process (WorkerContext.load)
    several models          the runner serves a rollout.LiveModels: production, perhaps a canary, swapped
                            whole by models_live.ModelWatcher between batches. A scan picks its model when
                            it is preprocessed (`preprocess_for(image, scan_id)`); its ModelInput carries
                            that ServedModel, and the batcher thread runs each batch's scans grouped by
                            it, so preprocessing, forward pass, thresholds and the verdict's `model` are
                            one model's, whatever was swapped meanwhile

CUDA is touched only inside `load_model`, which the worker calls in the process that will run the
model: a prefork child (worker_process_init), or the main process of a threads/solo worker. A
parent that forks never imports a CUDA context into its children.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog
import torch

from models.decision import KINDS
from workers.core import telemetry
from workers.core.clock import utcnow
from workers.core.enums import Reason
from workers.core.errors import RejectedScan, TransientError
from workers.core.schemas import ModelRef
from workers.core.settings import Settings
from workers.runtime.batching import Batcher
from workers.runtime.rollout import LiveModels, ServedModel, Serving

log = structlog.get_logger("workers.runtime.runner")

REGISTRY_PREFIX = "registry:"
MODEL_CACHE_DIR = Path(tempfile.gettempdir()) / "tenderscan-models"  # registry downloads, per machine


class InferenceTimeout(TransientError):
    """A scan's batch did not run within the task's time budget (the runner is stuck or overloaded)."""

    spends_attempt = True  # a hang, not an outage: a scan that hangs the runner every time is poison


@dataclass(frozen=True)
class LoadedModel:
    """Everything serving needs from a checkpoint, with the framework calls behind two functions."""

    ref: ModelRef
    sign_names: list[str]
    denominations: list[str]
    thresholds: Any  # models.decision.Thresholds
    input_shape: tuple[int, int, int]  # (3, H, W): what `preprocess` returns
    preprocess: Callable[[Any], Any]  # PIL RGB image -> ModelInput (or a bare [3, H, W] tensor: test twins)
    forward: Callable[[torch.Tensor], Any]  # float32 [B, 3, H, W] on `device` -> models.inference.Predictions
    device: torch.device
    # the stacked batch [B, 3, H, W] on `device` -> float32 model input: preprocessing's last, elementwise
    # stage (models.transforms.normalize), run once per batch instead of once per scan
    normalize: Callable[[torch.Tensor], torch.Tensor] = lambda x: x  # noqa: E731 - identity (test twins)
    input_dtype: torch.dtype = torch.float32  # what `preprocess` returns (uint8 for a real checkpoint)

    def input_batch(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-scan `preprocess` outputs (ModelInput or tensors) -> the forward pass's input, on the device."""
        return self.normalize(to_device(torch.stack([getattr(i, "x", i) for i in items]), self.device))


@dataclass(frozen=True)
class ModelInput:
    """One scan, preprocessed in its task thread: the canonical view, and what the locator saw there
    (models.decision.Seen: notes found, share of the note in frame), which the decision reads too."""

    x: torch.Tensor  # uint8 [3, H, W]
    seen: Any = None  # models.decision.Seen, or None (a model without a canonical view)
    served: Any = None  # the rollout.ServedModel that preprocessed it, and will run and decide it
    shadow: Any = None  # the shadow's own ModelInput, when the scan is in the shadow's sample


@dataclass(frozen=True)
class ScanPrediction:
    """One scan's share of a batch: probabilities plus where and when its batch ran."""

    p_counterfeit: float
    signs: dict[str, float]  # sign name -> probability
    denomination: dict[str, float]  # denomination -> probability
    batch_id: str
    batch_size: int
    inference_start: str
    inference_end: str
    batch_wait_ms: float  # from submit() until its batch started
    forward_ms: float  # the batch's stack + forward + copy back
    kind: dict[str, float] | None = None  # note / not_a_banknote / note_incomplete / multiple_notes -> probability
    ood: float | None = None  # how unlike the training notes the scan is (models.calibrate)
    served: Any = None  # the rollout.ServedModel that ran it: its thresholds and ModelRef decide the verdict
    shadow: Any = None  # the shadow's ScanPrediction for the same scan (recorded, never returned)


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def resolve_model_path(settings: Settings, cache_dir: Path = MODEL_CACHE_DIR) -> Path:
    """`settings.model` is a local path, or `registry:ALIAS|VERSION` in the models bucket."""
    if not settings.model.startswith(REGISTRY_PREFIX):
        return Path(settings.model)
    from workers.core import registry
    from workers.core.storage import S3ObjectStore

    store = S3ObjectStore.from_settings(settings, settings.models_bucket)
    return Path(registry.resolve(store, settings.model[len(REGISTRY_PREFIX):], cache_dir))


def preprocess_with(params: Any, thresholds: Any) -> Callable[[Any], ModelInput]:
    """The per-scan half of the checkpoint's preprocessing (models.transforms.canonical). A scan the
    locator already shows to be several notes, or too little of one, is rejected here, before any
    forward pass (models.decision.geometry_reason)."""
    from models.decision import Seen, geometry_reason
    from models.transforms import canonical

    def prepare(image) -> ModelInput:
        x, geo = canonical(image, params)
        seen = Seen(found=geo.found, notes=geo.notes, visible_share=geo.visible_share) if params.canonicalize else None
        reason = geometry_reason(seen, thresholds) if seen is not None else None
        if reason is not None:
            detail = (f"{geo.notes} note-shaped regions in the frame" if reason == Reason.MULTIPLE_NOTES
                      else f"{geo.visible_share:.0%} of the note inside the frame")
            raise RejectedScan(Reason(reason), detail)
        return ModelInput(x, seen)

    return prepare


def load_model(settings: Settings) -> LoadedModel:
    return load_path(resolve_model_path(settings), settings)


def load_path(path: Path, settings: Settings, expected_sha256: str | None = None) -> LoadedModel:
    """One checkpoint file -> LoadedModel on the settings' device; `expected_sha256`: of the weights
    (a registry version's meta.json `weights_sha256`), checked by the loader."""
    from models.checkpoint import load_checkpoint
    from models.inference import predict
    from models.transforms import normalize

    device = pick_device(settings.device)
    ckpt = load_checkpoint(path, map_location=device, expected_sha256=expected_sha256)
    params = ckpt.preprocess
    if device.type == "cuda":  # NHWC suits cuDNN's convolutions (bf16 autocast is in models.inference)
        ckpt.model = ckpt.model.to(memory_format=torch.channels_last)
    if settings.compile:  # compiled on the first call: the warm-up forward pays for it
        ckpt.model = torch.compile(ckpt.model)
    return LoadedModel(
        ref=ModelRef(ckpt.name, ckpt.version, ckpt.weights_sha256),
        sign_names=list(ckpt.sign_names),
        denominations=list(ckpt.denominations),
        thresholds=ckpt.thresholds,
        input_shape=(3, params.height, params.width),
        # models.transforms.preprocess_image split in its two stages: the per-scan canonical view in the
        # task thread (uint8), the elementwise normalisation on the stacked batch (bit-identical, one
        # op per batch instead of several per scan, and a quarter of the bytes to a GPU)
        preprocess=preprocess_with(params, ckpt.thresholds),
        forward=lambda x: predict(ckpt, x),
        device=device,
        normalize=lambda x: normalize(x, params),
        input_dtype=torch.uint8,
    )


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The stacked batch onto the model's device. On CUDA: pinned host memory, so the copy is an
    asynchronous DMA (non_blocking) ordered on the stream before the forward pass, and channels-last.
    Unrun on a GPU in this repository so far (no GPU was available); the CPU path is a no-op."""
    if device.type != "cuda":
        return x
    x = x.pin_memory().to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last)


def warm_up_sizes(device: torch.device, max_size: int) -> list[int]:
    """On CUDA the first batch of each new size pays for loading and choosing its kernels, so a CUDA
    worker runs every size once before its first scan (milliseconds each on the H200). Its effect on
    latency is unmeasured: the first-step tail on the H200 that prompted it stayed with it in place
    and most likely came from the benchmark's short warm-up (docs/PERFORMANCE.md, "On a GPU"). The
    CPU warms up at full size only: worker start-up time matters more there than a first-batch cost."""
    return list(range(1, max_size + 1)) if device.type == "cuda" else [max_size]


class ModelRunner:
    """A model plus the batcher in front of it. Thread-safe: task threads call `infer` concurrently."""

    def __init__(self, model: LoadedModel | LiveModels, max_batch_size: int, max_wait_s: float,
                 result_timeout_s: float = 60.0, flush_when_idle: bool = False) -> None:
        self.live = model if isinstance(model, LiveModels) else LiveModels(
            Serving(ServedModel("production", model.ref.version, model)))
        self.result_timeout_s = result_timeout_s
        self.batcher = Batcher(self._run_batch, max_batch_size, max_wait_s, name="tenderscan-batcher",
                               flush_when_idle=flush_when_idle)

    @classmethod
    def from_settings(cls, settings: Settings, model: LoadedModel | LiveModels | None = None) -> ModelRunner:
        """The worker's runner: a partial batch waits (up to max_wait_ms) only for scans its task threads
        are fetching and decoding (batching.Batcher.flush_when_idle), never for scans not yet dequeued."""
        if model is None:
            from workers.runtime.models_live import initial_live

            model = initial_live(settings)  # a path, or a registry alias / version, verified
        return cls(model, settings.max_batch_size, settings.max_wait_ms / 1000,
                   result_timeout_s=settings.task_soft_time_limit_s, flush_when_idle=True)

    @property
    def model(self) -> LoadedModel:
        """The production model now (a swap replaces it between batches)."""
        return self.live.serving.production.model

    @property
    def model_ref(self) -> ModelRef:
        return self.live.serving.production.ref

    @property
    def thresholds(self) -> Any:
        return self.model.thresholds

    def preprocess(self, image) -> Any:
        """PIL image -> ModelInput (raises RejectedScan for a scan the geometry alone rejects)."""
        return self.preprocess_for(image, None)

    def preprocess_for(self, image, scan_id: str | None) -> ModelInput:
        """preprocess with the model that will decide this scan (production, or the canary by its id)."""
        serving = self.live.serving  # one snapshot for both choices
        served = serving.pick(scan_id)
        x = served.model.preprocess(image)
        shadow, shadow_x = serving.shadows(scan_id), None
        if shadow is not None and shadow is not served:
            try:
                sx = shadow.model.preprocess(image)
                shadow_x = ModelInput(getattr(sx, "x", sx), getattr(sx, "seen", None), shadow)
            except Exception:  # noqa: BLE001 - the shadow's own rejection: it has nothing to score
                shadow_x = None
        if isinstance(x, ModelInput):
            return ModelInput(x.x, x.seen, served, shadow_x)
        return ModelInput(x, None, served, shadow_x)

    def infer(self, x) -> ScanPrediction:
        """Queue one preprocessed scan and wait for its batch. Runs in a task thread."""
        return self.result(self.submit(x))

    def submit(self, x) -> Future:
        """Queue one preprocessed scan (ModelInput or tensor) without waiting (multi-scan messages queue
        all theirs first)."""
        served = getattr(x, "served", None) or self.live.serving.production
        now = time.monotonic()
        future = self.batcher.submit((x.x if isinstance(x, ModelInput) else x, now, served))
        shadow = getattr(x, "shadow", None)
        if shadow is not None:  # scored in the same batch, in a forward pass of its own model
            future.shadow_future = self.batcher.submit((shadow.x, now, shadow.served))
        return future

    def expecting(self, n: int = 1) -> AbstractContextManager:
        """`n` scans will be submitted inside this block (they are being fetched and decoded)."""
        return self.batcher.expecting(n)

    def result(self, future: Future) -> ScanPrediction:
        """Wait for a submitted scan's batch, at most the task's time budget."""
        try:
            pred = future.result(timeout=self.result_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise InferenceTimeout(f"no forward pass within {self.result_timeout_s:.0f}s") from None
        shadow = getattr(future, "shadow_future", None)
        if shadow is None:
            return pred
        try:
            return replace(pred, shadow=shadow.result(timeout=self.result_timeout_s))
        except Exception:  # noqa: BLE001 - a shadow that fails or hangs leaves the scan's own answer alone
            return pred

    def warm_up(self) -> float:
        """Forward passes before the first scan (allocations, kernels, autotune), at every batch size
        the batcher can form on CUDA (see warm_up_sizes), at full size on the CPU."""
        return warm_up_model(self.model, self.batcher.max_size)

    def close(self) -> None:
        self.batcher.close()

    # --- the batcher thread ---------------------------------------------------------------------
    def _run_batch(self, items: Sequence[tuple[torch.Tensor, float, ServedModel]]) -> list[ScanPrediction]:
        """One forward pass per model among the batch's scans (one, except around a swap or with a canary)."""
        groups: dict[int, list[int]] = {}
        for i, (_, _, served) in enumerate(items):
            groups.setdefault(id(served), []).append(i)
        if len(groups) == 1:  # a failing batch is run again scan by scan (Batcher): count those failures only
            return self._run_group(items, count_errors=len(items) == 1)
        out: list[Any] = [None] * len(items)
        for idx in groups.values():
            try:
                preds = self._run_group([items[i] for i in idx], count_errors=True)
            except Exception as exc:  # noqa: BLE001 - this model's scans fail; the other model's go on
                preds = [exc] * len(idx)
            for i, pred in zip(idx, preds, strict=True):
                out[i] = pred
        return out

    def _run_group(self, items: Sequence[tuple[torch.Tensor, float, ServedModel]],
                   count_errors: bool) -> list[ScanPrediction]:
        served = items[0][2]
        try:
            return self._forward(served.model, served, items)
        except Exception:
            if count_errors:  # the canary's judge reads these
                served.record_error(len(items))
            raise

    def _forward(self, model: LoadedModel, served: ServedModel,
                 items: Sequence[tuple[torch.Tensor, float, ServedModel]]) -> list[ScanPrediction]:
        batch_id = uuid.uuid4().hex[:16]
        t0 = time.monotonic()
        started = utcnow()
        with structlog.contextvars.bound_contextvars(batch_id=batch_id):
            with telemetry.cpu_stage("batch"):
                x = model.input_batch([t for t, _, _ in items])
            with telemetry.cpu_stage("forward"):
                preds = model.forward(x)
                p_cf = preds.p_counterfeit.detach().float().cpu().tolist()
                signs = preds.signs.detach().float().cpu().tolist()
                denom = preds.denomination.detach().float().cpu().tolist()
                kind = getattr(preds, "kind", None)
                kind = kind.detach().float().cpu().tolist() if kind is not None else None
                ood = getattr(preds, "ood", None)
                ood = ood.detach().float().cpu().tolist() if ood is not None else None
            ended = utcnow()
            forward_ms = (time.monotonic() - t0) * 1000
            fill_ms = (t0 - min(enq for _, enq, _ in items)) * 1000
            log.info("batch_done", batch_id=batch_id, size=len(items), forward_ms=round(forward_ms, 2),
                     fill_wait_ms=round(fill_ms, 2), device=str(model.device), model_version=served.version)
            telemetry.observe_batch(len(items), forward_ms)
        names, classes = model.sign_names, model.denominations
        with telemetry.cpu_stage("batch"):  # the outputs, one ScanPrediction per scan
            out = [
                ScanPrediction(
                    p_counterfeit=float(p_cf[i]),
                    signs={n: float(v) for n, v in zip(names, signs[i], strict=True)},
                    denomination={n: float(v) for n, v in zip(classes, denom[i], strict=True)},
                    batch_id=batch_id, batch_size=len(items), inference_start=started, inference_end=ended,
                    batch_wait_ms=(t0 - enq) * 1000, forward_ms=forward_ms,
                    kind=None if kind is None else {n: float(v) for n, v in zip(KINDS, kind[i], strict=True)},
                    ood=None if ood is None else float(ood[i]), served=served,
                )
                for i, (_, enq, _) in enumerate(items)
            ]
        return out


def warm_up_model(model: LoadedModel, max_size: int) -> float:
    """ModelRunner.warm_up for any LoadedModel: a new version is warmed up before it is swapped in."""
    t0 = time.monotonic()
    x = torch.zeros((max_size, *model.input_shape), dtype=model.input_dtype)
    for size in warm_up_sizes(model.device, max_size):
        model.forward(model.input_batch(x[:size]))
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.monotonic() - t0


# --- the runner of a worker process -------------------------------------------------------------
def build_runner(settings: Settings) -> ModelRunner:
    """Load, warm up and log this process's runner. WorkerContext.load calls it once, in the process
    that runs the model (after any fork)."""
    t0 = time.monotonic()
    runner = ModelRunner.from_settings(settings)
    warm_s = runner.warm_up()
    log.info("model_loaded", model=runner.model_ref.name, version=runner.model_ref.version,
             alias=runner.live.serving.production.alias,
             weights_sha256=runner.model_ref.sha256[:12], device=str(runner.model.device),
             load_s=round(time.monotonic() - t0, 3), warm_up_s=round(warm_s, 3),
             max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms)
    return runner
