"""The naive contender: `celery -A producer.bench.naive worker -P prefork|solo -Q tenderscan.naive`.

What a team writes first: one Celery task per scan that fetches, decodes, runs ONE forward pass on
that one image (DirectRunner, batch size 1) and publishes. It reuses the same pipeline functions, so
the per-scan work (S3 GET, checksum, decode, SET NX verdict, S3 audit record, logs) is identical to
tenderscan's; only the batching and the overlap differ. Reliability is the same too (acks late).
Prefork children each use one torch thread (two children on two cores would otherwise fight);
-P solo keeps torch's default threads.
"""

from __future__ import annotations

from celery import signals

from workers.core.celery_app import make_celery
from workers.core.logging import configure_logging
from workers.core.schemas import ScanMessage
from workers.core.settings import Settings
from workers.runtime import pipeline
from workers.runtime.context import WorkerContext, attach, context_of

TASK = "bench.naive_scan"
QUEUE = "tenderscan.naive"

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_json)
app = make_celery(settings, main="tenderscan-naive")
app.conf.task_routes = {TASK: {"queue": QUEUE}}
app.conf.task_default_queue = QUEUE
app.set_current()


@signals.worker_process_init.connect
def _child(**_) -> None:
    """In each prefork child (or the solo pool's process): its own context, with a batch-of-one runner."""
    import billiard.process
    import torch

    from producer.bench.standins import DirectRunner
    from workers.runtime.runner import load_model

    if billiard.process.current_process().name.startswith("ForkPoolWorker"):
        torch.set_num_threads(1)  # a prefork child; -P solo keeps torch's default
    ctx = WorkerContext.from_settings(settings)
    ctx.runner = DirectRunner(load_model(settings))
    attach(app, ctx.load())


@app.task(name=TASK, acks_late=True, ignore_result=True)
def naive_scan(raw) -> str:
    return pipeline.process_scan(ScanMessage.decode(raw), context_of(app)).decision
