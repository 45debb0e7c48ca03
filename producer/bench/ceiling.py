"""The queue's own ceiling: `celery -A producer.bench.ceiling worker -P threads` (BENCHMARK ONLY).

The real tenderscan worker app (workers.app: the same tasks, Celery settings, acks late, SET NX
verdicts, logs, metrics) with the object store and the forward pass swapped for zero-cost stand-ins
(producer/bench/standins.py), so what is left is the cost of the queue and the per-scan plumbing,
plus the checkpoint's own per-scan preprocessing of the stand-in's 32 x 32 PNG (the worker's real
`preprocess`: the model's weights are loaded but never run).
"""

from __future__ import annotations

import os

from producer.bench.standins import StandInObjectStore, StandInRunner
from workers import app as worker_app
from workers.core import imaging
from workers.core.verdict_store import VerdictStore
from workers.runtime import pipeline, tasks
from workers.runtime import runner as model_runner

settings = worker_app.settings
# the bench sets this (BenchConfig.ceiling_preprocess); read here, in the bench-only entry point
_preprocess = os.environ.get("TENDERSCAN_BENCH_CEILING_PREPROCESS", "true") == "true"
_runner = StandInRunner(settings.max_batch_size, settings.max_wait_ms / 1000,
                        preprocess=model_runner.load_model(settings).preprocess if _preprocess else None,
                        flush_when_idle=True)  # as the worker's own runner (ModelRunner.from_settings)
model_runner._runner = _runner  # the worker_init hook finds a runner and loads no model
tasks._deps = pipeline.Deps(StandInObjectStore(), VerdictStore.from_settings(settings), _runner,
                            imaging.Limits.from_settings(settings), max_attempts=settings.max_attempts)
app = worker_app.app
