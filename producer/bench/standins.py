"""BENCHMARK-ONLY stand-ins. Never used by the API or by a deployed worker.

    StandInObjectStore   get() returns one tiny valid PNG for any key, put() drops the bytes:
                         a zero-cost S3 (the queue's own ceiling run)
    StandInRunner        the real Batcher in front of a zero-cost "forward pass" that returns fixed
                         probabilities: batching, futures and decide still run; `preprocess` is the
                         worker's real one when given (the ceiling passes the checkpoint's)
    DirectRunner         a real model, one forward pass per image, no batcher: the naive worker

The ceiling run keeps everything else real: Celery, Redis (the broker, start_scans, the SET NX
verdict Lua script), the checksum check, a full (tiny) decode, the checkpoint's per-scan
preprocessing (for a canonicalizing model: locate -> no note found -> plain resize, then the
lighting flattening at the model's input size), logs and telemetry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from workers.core.clock import utcnow
from workers.core.schemas import ModelRef
from workers.core.storage import StoredObject
from workers.runtime.batching import Batcher

STAND_IN_MODEL = ModelRef(name="stand-in", version="0", sha256="0" * 64)


@functools.cache
def tiny_png() -> bytes:
    """A 32 x 32 PNG: the smallest image the default limits accept (min_side 32)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (40, 90, 140)).save(buf, "PNG")
    return buf.getvalue()


def tiny_png_sha256() -> str:
    return hashlib.sha256(tiny_png()).hexdigest()


class StandInObjectStore:
    """Zero-cost object store: every key holds tiny_png(); writes vanish."""

    bucket = "stand-in"

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> None:
        return None

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        return StoredObject(tiny_png(), {}, "image/png")

    def head(self, key: str) -> tuple[int, dict[str, str]]:
        return len(tiny_png()), {}

    def exists(self, key: str) -> bool:
        return False

    def list(self, prefix: str):
        return iter(())

    def delete(self, key: str) -> None:
        return None

    def ping(self) -> None:
        return None


class StandInRunner:
    """The pipeline's Runner with a zero-cost forward pass behind the real Batcher."""

    model_ref = STAND_IN_MODEL

    def __init__(self, max_batch_size: int, max_wait_s: float, sign_names: Sequence[str] = ("microprint",),
                 denominations: Sequence[str] = ("20",), preprocess: Callable[[Any], Any] | None = None,
                 flush_when_idle: bool = False) -> None:
        from models.decision import Thresholds

        self._preprocess = preprocess
        self.thresholds = Thresholds()
        self.sign_names = list(sign_names)
        self.denominations = list(denominations)
        self.batcher = Batcher(self._run_batch, max_batch_size, max_wait_s, name="stand-in-batcher",
                               flush_when_idle=flush_when_idle)

    def preprocess(self, image) -> Any:
        return None if self._preprocess is None else self._preprocess(image)

    def infer(self, x) -> Any:
        return self.result(self.submit(x))

    def submit(self, x):
        return self.batcher.submit((x, time.monotonic()))

    def result(self, future) -> Any:
        return future.result(timeout=60)

    def expecting(self, n: int = 1):
        return self.batcher.expecting(n)

    def close(self) -> None:
        self.batcher.close()

    def _run_batch(self, items):
        from workers.core import telemetry
        from workers.runtime.runner import ScanPrediction

        t0, now, batch_id = time.monotonic(), utcnow(), uuid.uuid4().hex[:16]
        telemetry.observe_batch(len(items), 0.0)
        return [ScanPrediction(p_counterfeit=0.1, signs={n: 0.1 for n in self.sign_names},
                               denomination={d: 1.0 for d in self.denominations}, batch_id=batch_id,
                               batch_size=len(items), inference_start=now, inference_end=now,
                               batch_wait_ms=(t0 - enq) * 1000, forward_ms=0.0)
                for _, enq in items]


class DirectRunner:
    """A real model at batch size 1: what a first, naive worker does (no batcher, no overlap)."""

    def __init__(self, model) -> None:  # workers.runtime.runner.LoadedModel
        self.model = model
        self.model_ref = model.ref
        self.thresholds = model.thresholds

    def preprocess(self, image):
        return self.model.preprocess(image)

    def expecting(self, n: int = 1):
        return contextlib.nullcontext()  # no batcher: nothing waits for anything

    def submit(self, x):
        future: Future = Future()
        future.set_result(self.infer(x))
        return future

    def result(self, future):
        return future.result()

    def infer(self, x):
        from workers.runtime.runner import ScanPrediction

        t0, started = time.monotonic(), utcnow()
        preds = self.model.forward(self.model.input_batch([x]))
        p_cf = float(preds.p_counterfeit[0])
        signs = {n: float(v) for n, v in zip(self.model.sign_names, preds.signs[0].tolist(), strict=True)}
        denom = {n: float(v) for n, v in zip(self.model.denominations, preds.denomination[0].tolist(), strict=True)}
        return ScanPrediction(p_counterfeit=p_cf, signs=signs, denomination=denom, batch_id=uuid.uuid4().hex[:16],
                              batch_size=1, inference_start=started, inference_end=utcnow(), batch_wait_ms=0.0,
                              forward_ms=(time.monotonic() - t0) * 1000)
