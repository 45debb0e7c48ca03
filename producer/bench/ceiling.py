"""The queue's own ceiling: `celery -A producer.bench.ceiling worker -P threads` (BENCHMARK ONLY).

The real tenderscan worker app (workers.runtime.worker: the same tasks, Celery settings, acks late,
SET NX verdicts, logs, metrics) with the object store and the forward pass swapped for zero-cost
stand-ins (producer/bench/standins.py), so what is left is the cost of the queue and the per-scan
plumbing, plus the checkpoint's own per-scan preprocessing of the stand-in's 32 x 32 PNG (the
worker's real `preprocess`: the model's weights are loaded but never run). The stand-ins go into the
worker's context before the worker starts; its worker_init hook keeps a context it finds attached.
"""

from __future__ import annotations

import os

from producer.bench.standins import StandInObjectStore, StandInRunner
from workers.core.verdict_store import VerdictStore
from workers.runtime import worker
from workers.runtime.context import WorkerContext, attach
from workers.runtime.runner import load_model

settings = worker.settings
# the bench sets this (BenchConfig.ceiling_preprocess); read here, in the bench-only entry point
_preprocess = os.environ.get("TENDERSCAN_BENCH_CEILING_PREPROCESS", "true") == "true"
_stand_ins = WorkerContext.from_settings(settings)
_stand_ins.objects = StandInObjectStore()
_stand_ins.verdicts = VerdictStore.from_settings(settings)
_stand_ins.runner = StandInRunner(settings.max_batch_size, settings.max_wait_ms / 1000,
                                  preprocess=load_model(settings).preprocess if _preprocess else None,
                                  flush_when_idle=True)  # as the worker's own runner (ModelRunner.from_settings)
attach(worker.app, _stand_ins)
app = worker.app
